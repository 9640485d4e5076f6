"""The event the ETL job sends when a run has written processed data: the one signal of new data.

Glue's own "Glue Job State Change" SUCCEEDED fires for every run, also for an hourly run that
found nothing new; reacting to it retrained the model and reloaded the warehouse every hour.
The job (mlops_cfn/data/glue/etl_job.py) instead says what it wrote, after committing its
bookmark: an event on the default bus

    {"source": "mlops-cfn.etl", "detail-type": "Processed Data Written",
     "detail": {"jobName": ..., "jobRunId": ..., "recordsWritten": 1234,
                "location": "s3://...", "format": "parquet"}}

and the stages that react to new data (analytics' load, training's etl_success trigger) match
`new_records_pattern`: this job, at least one record. The source, detail type and field name
are the protocol between the job and its consumers, defined here once; the job name travels
through the EtlJobName wire.
"""

from typing import Any

# A custom event's source may be anything not starting with "aws." (AWS: "Amazon EventBridge
# events", PutEvents).
SOURCE = "mlops-cfn.etl"
DETAIL_TYPE = "Processed Data Written"
RECORDS_WRITTEN = "recordsWritten"


def new_records_pattern(job_name: Any) -> dict:
    """Events of the ETL job `job_name` that wrote at least one record (a numeric matching
    filter: AWS, "Content filtering in Amazon EventBridge event patterns")."""
    return {
        "source": [SOURCE],
        "detail-type": [DETAIL_TYPE],
        "detail": {"jobName": [job_name], RECORDS_WRITTEN: [{"numeric": [">", 0]}]},
    }
