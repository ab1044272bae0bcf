"""Datasets on disk: the tables' schemas (``schemas``), the directory layout, atomic Parquet writes and readers
(``io``), brute-force rows (``runs``), splitting rows (``rare_rows``) and ``check``."""

from .check import check_dataset, in_progress_line, repair
from .io import (
    config_ids,
    experiment_row,
    part_path,
    part_ranges,
    rare_in_progress,
    rare_part_path,
    read_dataset,
    read_table,
    remove_stale_temporaries,
    temporaries,
    write_atomic,
    write_experiments,
)
from .rare_rows import rare_tables, write_rare
from .runs import ChunkResult, ChunkTables, chunk_tables, write_chunk
from .schemas import LATER_COLUMNS, RARE_TABLES, REQUIRED, SCHEMA_VERSION, SCHEMAS, TABLES, schema_ok
