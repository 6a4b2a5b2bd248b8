"""What the commands run on cohorts: training runs that write model folders, cross-validation, the
stage-1 evaluation and the demo. Each function here is one command's library call."""
