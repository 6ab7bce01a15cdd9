"""Reader tests: the documentation followed the way a reader follows it, against the installed wheel."""
