"""The Lambda functions of the workflow: thin powertools handlers over plain logic (torch-free)."""
