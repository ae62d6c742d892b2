"""SAM image-encoder CPU seconds per slice (1024 x 1024, batch 1, random weights: speed does not
depend on them), the source of SAMFewShotLib.slicer_support.first_use.ENCODER_CPU_SECONDS_PER_SLICE.

Run: python Testing/slicer_support/encoder_cpu_timing.py (about 3 minutes on 2 cores). Not a test.
"""

import time

import torch


def measure(name: str, build) -> None:
    """Print wall and CPU seconds per encoder call (after one warm-up call)."""
    model = build().eval()
    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        model.image_encoder(x)  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(2):
            model.image_encoder(x)
    print(f"{name}: wall s/slice {(time.perf_counter() - wall) / 2:.1f}, cpu s/slice {(time.process_time() - cpu) / 2:.1f}, "
          f"threads {torch.get_num_threads()}", flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    from segment_anything import sam_model_registry

    try:
        from mobile_sam import sam_model_registry as mobile_registry

        measure("vit_t", lambda: mobile_registry["vit_t"](checkpoint=None))
    except ImportError as error:
        print(f"vit_t skipped: {error}")
    measure("vit_b", lambda: sam_model_registry["vit_b"](checkpoint=None))
