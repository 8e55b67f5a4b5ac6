"""The shipped alert rules evaluated by Prometheus's own rule engine (`promtool test rules`):
given the series a deployment would expose over time, each alert fires when it should and not
before. Needs Debian's `prometheus` package; skipped without it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ALERTS = Path(__file__).resolve().parents[2] / "infra" / "prometheus" / "alerts.yml"

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="Prometheus is not installed: apt-get install prometheus (Debian package)",
)

# Two live cameras as the worker reports them every 15 s: `door` keeps sending (its newest
# capture time is always now), `yard` goes silent after 2 minutes (stuck at 120 s).
SILENT_CAMERA = f"""
rule_files:
  - {ALERTS}
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'fashionstream_camera_last_frame_timestamp_seconds{{camera="door"}}'
        values: '0+15x40'
      - series: 'fashionstream_camera_last_frame_timestamp_seconds{{camera="yard"}}'
        values: '0+15x8 120x32'
    alert_rule_test:
      - eval_time: 2m
        alertname: FashionstreamCameraSilent
        exp_alerts: []
      - eval_time: 3m  # silent for 60 s: not yet over the threshold
        alertname: FashionstreamCameraSilent
        exp_alerts: []
      - eval_time: 3m45s  # over 60 s since 3m15s, but not yet for the rule's 1 minute
        alertname: FashionstreamCameraSilent
        exp_alerts: []
      - eval_time: 5m
        alertname: FashionstreamCameraSilent
        exp_alerts:
          - exp_labels: {{severity: warning, camera: yard}}
            exp_annotations:
              summary: >
                Live camera yard has sent no frame for 3m 0s:
                check the camera, its network and its producer (fashionstream_source_state,
                fashionstream_source_reconnects_total). A camera taken out of service on purpose
                stays here until the workers restart.
"""


@needs_promtool
def test_a_silent_live_camera_alerts_after_a_minute_and_a_sending_one_never(
    tmp_path: Path,
) -> None:
    tests = tmp_path / "silent_camera_test.yml"
    tests.write_text(SILENT_CAMERA)
    result = subprocess.run(
        ["promtool", "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
