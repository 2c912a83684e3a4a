"""Reading what the flow wrote: CloudWatch metrics, data capture and outcome records (reports, review)."""
