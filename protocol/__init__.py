"""The contract between gate and station: pure data and rules, no I/O."""
