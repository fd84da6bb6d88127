"""What a submitted job did, from Ray's job and state APIs, in one process.

Run by the cluster tests as ``python -m tests.cluster.job_report DASHBOARD_URL SUBMISSION_ID``
with the cluster's environment (its auth token). Prints one JSON object: the job's status,
Ray job id and logs, the alive nodes, and every actor the job had (class, state, node). One
process instead of the four ``ray`` CLI calls it replaces (``job logs``, ``list jobs``,
``list nodes``, ``list actors``): each of those spends about 2.7 s importing Ray's CLI here.
"""

from __future__ import annotations

import json
import sys


def report(address: str, submission_id: str) -> dict[str, object]:
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors, list_nodes

    client = JobSubmissionClient(address)
    info = client.get_job_info(submission_id)
    nodes = list_nodes(address=address, filters=[("state", "=", "ALIVE")], limit=10_000,
                       detail=True, raise_on_missing_output=False)
    actors = [] if info.job_id is None else list_actors(
        address=address, filters=[("job_id", "=", info.job_id)], limit=10_000, detail=True,
        raise_on_missing_output=False)
    return {
        "status": str(info.status.value),
        "job_id": info.job_id,
        "logs": client.get_job_logs(submission_id),
        "alive_nodes": sorted(n.node_id for n in nodes),
        "actors": [{"class_name": a.class_name, "state": a.state, "node_id": a.node_id}
                   for a in actors],
    }


if __name__ == "__main__":
    print(json.dumps(report(sys.argv[1], sys.argv[2])))
