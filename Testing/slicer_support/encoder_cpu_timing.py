"""SAM image-encoder CPU seconds per slice (1024 x 1024, batch 1, random weights: speed does
not depend on them), the source of SAMFewShotLib.slicer_support.first_use.ENCODER_CPU_SECONDS_PER_SLICE.

Run: python Testing/slicer_support/encoder_cpu_timing.py (about 3 minutes on 2 cores). Not a test.
"""
import time, os, resource, torch
torch.manual_seed(0)
from segment_anything import sam_model_registry
out = {}
def measure(name, build):
    model = build().eval()
    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        model.image_encoder(x)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(2):
            model.image_encoder(x)
        print(name, "wall s/slice", (time.perf_counter()-t0)/2, "cpu s/slice", (time.process_time()-c0)/2, "threads", torch.get_num_threads(), flush=True)
try:
    from mobile_sam import sam_model_registry as msr
    measure("vit_t", lambda: msr["vit_t"](checkpoint=None))
except Exception as e:
    print("vit_t failed", e)
measure("vit_b", lambda: sam_model_registry["vit_b"](checkpoint=None))
