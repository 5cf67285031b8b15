"""Results, files and logs: results too large for the record and runs' logs in the results
bucket (`bucket`), uploaded files (`files`, and the multipart start of a run in `forms`),
what a task prints and logs, captured in its process (`tasklogs`), and a run's logs as the
API reads them (`runlogs`).
"""
