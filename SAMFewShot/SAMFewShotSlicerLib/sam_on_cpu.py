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


def showEncoderEstimate(panel) -> None:
    """Before a SAM-family run: slices to encode and the expected encoder time in the propagation
    panel's status line, while no job runs (called when the engine, model, device or segment changes)."""
    parameterNode = panel.widget.parameterNode()
    if parameterNode is None or panel.monitor.running:
        return
    try:
        line = encoderEstimate(panel.logic, panel.widget.weightsPanel.rows, parameterNode)
    except Exception as error:  # the estimate must never block the panel
        logging.warning(f"SAMFewShot: no encoder estimate: {error}")
        line = None
    if line is not None or panel.ui.statusLabel.text.startswith("SAM encoder ("):
        panel.ui.statusLabel.text = line or ""


def encoderEstimate(logic, checkpointRows, parameterNode):
    """The panel's line before a SAM-family run: slices to encode and the expected encoder time
    (``SAMFewShotLib.slicer_support.encoder_estimate``); None for an engine without weights, no
    model, or nothing drawn."""
    if engineFamily(parameterNode.engine) not in commands.WEIGHTED_ENGINES or parameterNode.inputVolume is None:
        return None
    row = next((r for r in checkpointRows if r.name == parameterNode.checkpoint), None)
    if row is None or parameterNode.segmentationNode is None or not parameterNode.segmentId:
        return None
    from SAMFewShotLib.slicer_support.encoder_estimate import encoder_estimate_line

    drawn = logic.scene.segmentMask(parameterNode.inputVolume, parameterNode.segmentationNode, parameterNode.segmentId)
    stack = drawn.reshape(drawn.shape[0], -1).any(axis=1).nonzero()[0]  # axial extent
    if not len(stack):
        return None
    count = first_use.slices_to_encode(int(stack[0]), int(stack[-1]), drawn.shape[0])
    try:
        from SAMFewShotLib.sam.encoder_budget import measured_seconds_per_slice

        measured = measured_seconds_per_slice(row.model_type)
    except Exception as error:  # an unreadable cache folder costs the measurement only
        logging.warning(f"SAMFewShot: could not read the encoder measurements: {error}")
        measured = None
    device = "cuda" if parameterNode.device == "cuda" else "cpu"
    return encoder_estimate_line(row.model_type, count, measured, device)


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
