"""The healing layer: the pipeline's stages 1-3 as one run (``pipeline``), the monitoring pass
and its actions (``monitor``), the policy, the retraining candidates, releases judged on live
traffic (``releases``), replay and the strategies it compares with, adoption, narration and
notifications. It sits on the model layer and below the views, the service and the CLI."""
