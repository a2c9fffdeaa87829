"""Collecting preference data: candidate answers from a model (``generate``); screenshots and the labeling UI come
next. What it writes, the readers read: no second record format."""
