"""From run directories to results: ``collect`` gathers runs into CSV files, ``stats`` summarises
seeds, ``compare`` and ``gate`` give the verdicts, ``figures`` and ``result_tables`` render every figure
and table from the collected files alone."""
