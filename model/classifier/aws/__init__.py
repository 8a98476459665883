"""The S3 side of serving: the uploads bucket, the classify-on-upload function and the bulk worker and launcher.

May import serving, records, store, observability, config and errors; never api, lifecycle or cli.
"""
