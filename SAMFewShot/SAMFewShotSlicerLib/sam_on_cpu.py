"""Before a SAM run on the CPU: how long the image encoder will take (seconds per slice x slices
to encode: this machine's own measurement when an earlier run recorded one,
``SAMFewShotLib.sam.encoder_budget``, else ``SAMFewShotLib.slicer_support.first_use``'s shipped
figure), with the choice of a lighter engine, as TotalSegmentator warns before its CPU runs.
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
    question = cpuQuestion(row.model_type, count)
    if question is None or torchHasGpu(parameterNode.device):
        return True
    answer = slicer.util.confirmYesNoDisplay(question + "\n\nYes: run it. No: switch to register:dis.",
                                             windowTitle="SAMFewShot: SAM on the CPU")
    if not answer:
        parameterNode.engine = first_use.LIGHTER_ENGINES[0]  # the user clicks Propagate again
    return bool(answer)


def cpuQuestion(modelType: str, count: int):
    """The question before the run: from this machine's own measured encoder seconds per slice
    (kept by earlier runs, ``SAMFewShotLib.sam.encoder_budget``), else from the shipped estimate."""
    try:
        from SAMFewShotLib.sam.encoder_budget import cpu_run_question, measured_seconds_per_slice

        measured = measured_seconds_per_slice(modelType)
    except Exception as error:  # an unreadable cache folder must not block the question
        logging.warning(f"SAMFewShot: could not read the encoder measurements: {error}")
        measured = None
    if measured is None:
        return first_use.cpu_warning(modelType, count)
    return cpu_run_question(modelType, count, measured)


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
