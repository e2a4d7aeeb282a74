"""Pure metrics over explanation records: faithfulness, agreement, plausibility, statistics, sanity, costs."""
