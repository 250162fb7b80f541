"""Reports from run directories: tables, plots and the paper's numbers beside ours. Never trains."""
