"""Reports derived from a Trajectory: report.json, report.html and the evidence images."""
