"""From run directories to results: ``collect`` gathers runs into CSV files, ``stats`` summarises
seeds, ``figures`` renders every figure and table from the collected files alone."""
