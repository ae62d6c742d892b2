"""Before a SAM run on the CPU: how long the image encoder will take (measured seconds per slice
x slices to encode, ``SAMFewShotLib.slicer_support.first_use``), with the choice of a lighter
engine, as TotalSegmentator warns before its CPU runs.
"""

import logging

import slicer
from SAMFewShotLib.slicer_support import commands, first_use

from .engine_choices import engineFamily


def confirmSamRunOnCpu(logic, checkpointRows, parameterNode) -> bool:
    """Before a SAM run on the CPU: the estimated encoder time, with the choice to switch to a
    lighter engine (False: the user switched or cancelled)."""
    if engineFamily(parameterNode.engine) not in commands.WEIGHTED_ENGINES or parameterNode.device == "cuda":
        return True
    row = next((r for r in checkpointRows if r.name == parameterNode.checkpoint), None)
    drawn = logic.scene.segmentMask(parameterNode.inputVolume, parameterNode.segmentationNode, parameterNode.segmentId)
    stack = drawn.reshape(drawn.shape[0], -1).any(axis=1).nonzero()[0]  # axial extent
    if row is None or not len(stack):
        return True
    count = first_use.slices_to_encode(int(stack[0]), int(stack[-1]), drawn.shape[0])
    question = first_use.cpu_warning(row.model_type, count)
    if question is None or torchHasGpu(parameterNode.device):
        return True
    answer = slicer.util.confirmYesNoDisplay(question + "\n\nYes: run it. No: switch to register:dis.",
                                             windowTitle="SAMFewShot: SAM on the CPU")
    if not answer:
        parameterNode.engine = first_use.LIGHTER_ENGINES[0]  # the user clicks Propagate again
    return bool(answer)


def torchHasGpu(device: str) -> bool:
    """Whether ``auto`` will find a CUDA GPU (torch is imported only for a SAM run)."""
    if device == "cpu":
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception as error:  # a broken torch must not block the question
        logging.warning(f"SAMFewShot: could not ask torch for a GPU: {error}")
        return False
