"""Many runs: reading run folders, their columns, tables, --where, listings and the comparison page."""
