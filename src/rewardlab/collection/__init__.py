"""Collecting preference data: candidate answers from a model (``generate``), screenshots of web pages with a real
browser (``capture``) and the labeling web app (``label``, with Label Studio import/export). What it writes, the
readers read: no second record format."""
