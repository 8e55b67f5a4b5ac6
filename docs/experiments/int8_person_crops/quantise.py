"""Static int8 quantisation of the person-crop detector's ONNX graph, timed and compared with
the float graph on the same crops (interleaved, 2 threads, medians).

    python quantise.py PERSON_CROPS.onnx CROPS.npy OUT_DIR qdq|qop
PERSON_CROPS.onnx: the cached export, `$FASHIONSTREAM_STATE_DIR/onnx/person_crops-floor0.5-*.onnx`.
"""

import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

source, crops_path, out_dir, variant = sys.argv[1:5]
crops = np.load(crops_path)
calibration, evaluation = crops[0::2], crops[1::2]
out = Path(out_dir) / f"person_crops-int8-{variant}.onnx"


class Reader(CalibrationDataReader):
    def __init__(self):
        self.inputs = iter([{"image": c[None]} for c in calibration[:48]])

    def get_next(self):
        return next(self.inputs, None)


quantize_static(
    source,
    str(out),
    Reader(),
    quant_format=QuantFormat.QOperator if variant == "qop" else QuantFormat.QDQ,
    op_types_to_quantize=["Conv"],
    per_channel=True,
    activation_type=QuantType.QUInt8,
    weight_type=QuantType.QInt8,
    calibrate_method=CalibrationMethod.MinMax,
)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(s, x):
    return s.run(None, {"image": x[None]})


def iou(p, q):
    w = max(0, min(p[2], q[2]) - max(p[0], q[0]))
    h = max(0, min(p[3], q[3]) - max(p[1], q[1]))
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - w * h
    return w * h / union if union > 0 else 0.0


fp32, int8 = session(source), session(out)
for x in evaluation[:3]:
    run(fp32, x), run(int8, x)
times = {"fp32": [], "int8": []}
for x in evaluation[:48]:
    for name, s in (("fp32", fp32), ("int8", int8)):
        began = time.perf_counter()
        run(s, x)
        times[name].append(time.perf_counter() - began)
print({k: round(1000 * float(np.median(v)), 1) for k, v in times.items()}, "ms a crop")
found = kept = again = 0
for x in evaluation:
    (ba, la, sa, _), (bb, lb, sb, _) = run(fp32, x), run(int8, x)
    ka = [i for i in range(len(sa)) if sa[i] >= 0.5]
    kb = [j for j in range(len(sb)) if sb[j] >= 0.5]
    found, kept, used = found + len(ka), kept + len(kb), set()
    for i in ka:
        best = max(
            ((iou(ba[i], bb[j]), j) for j in kb if lb[j] == la[i] and j not in used),
            default=(0.0, None),
        )
        if best[0] >= 0.5:
            again += 1
            used.add(best[1])
print(
    f"{len(evaluation)} crops: fp32 {found} detections, int8 {kept}; fp32 ones found again "
    f"(same class, IoU >= 0.5): {again}"
)
