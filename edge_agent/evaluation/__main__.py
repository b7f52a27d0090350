"""`python -m edge_agent.evaluation run|compare …`: the eval commands without the main CLI."""

from edge_agent.evaluation.command import eval_app

eval_app(prog_name="edge-agent eval")
