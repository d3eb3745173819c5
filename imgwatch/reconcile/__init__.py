"""The reconcile: the tree compared with the rows, once at start, on a schedule or with --rescan."""
