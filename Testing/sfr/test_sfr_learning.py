"""SFR's claim on a phantom a threshold cannot solve: a 3D network re-trained with Mean Teacher on
one labelled volume plus pseudo-labelled ones beats supervised-only training on the labelled
volume and beats the pseudo-labels it was trained on; on held-out volumes it beats, with a
margin, the untrained network, the best intensity threshold (chosen on the held-out volumes
themselves) and the copy of the labelled volume's mask (the identity warp)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")  # the sfr extra

import numpy as np
import torch

from SAMFewShotLib.metrics import dice
from SAMFewShotLib.sfr.inference import segment
from SAMFewShotLib.sfr.network import NetworkConfig
from SAMFewShotLib.sfr.retraining import RetrainSettings, prepare_volume, retrain
from Testing.sfr.sfr_phantom import PerturbedTruthSource, make_case

NORMALISATION = {"method": "none"}
CONFIG = NetworkConfig(channels=(8, 16, 32), strides=(2, 2))
ITERATIONS, PATCH = 150, 16
#: Held-out Dice margin of SFR over the best of the baselines.
HELD_OUT_MARGIN = 0.05


def _train(labelled, pseudo, unlabelled, method, iterations=ITERATIONS):
    """The trained network; ``iterations=0``: the seeded initial network (the untrained baseline)."""
    settings = RetrainSettings(iterations=max(iterations, 1), patch=PATCH, method=method,
                               consistency_rampup=ITERATIONS // 2)
    if iterations == 0:
        from SAMFewShotLib.sfr.retraining import Trainer

        return Trainer(labelled, pseudo, unlabelled, CONFIG, settings, torch.device("cpu")).inference_network()
    return retrain(labelled, pseudo, unlabelled, config=CONFIG, settings=settings).network


def test_retrained_model_beats_supervised_only_and_its_pseudo_labels():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    image, labels = make_case(0)
    study = [make_case(seed) for seed in range(1, 6)]
    held_out = [make_case(seed) for seed in range(100, 104)]
    # a threshold finds the ball and the same-intensity cube alike
    for case_image, case_labels in study:
        assert dice(case_image.array > 0.5, case_labels.array > 0) < 0.75
    source = PerturbedTruthSource({id(case_image): case_labels for case_image, case_labels in study})
    pseudo = [source(image, labels, case_image) for case_image, _ in study]
    pseudo_dice = np.mean([dice(p.labels.array > 0, truth.array > 0) for p, (_, truth) in zip(pseudo, study)])
    prepare = dict(spacing=image.spacing, normalisation=NORMALISATION, label_values=[1])
    labelled = [prepare_volume(image, labels, None, **prepare)]
    pseudo_volumes = [prepare_volume(i, p.labels, None, **prepare) for p, (i, _) in zip(pseudo, study)]
    unlabelled = [v.image for v in pseudo_volumes]

    def score(network, cases):
        return np.mean([dice(segment(network, i, label_values=[1], patch=PATCH, spacing=image.spacing,
                                     normalisation=NORMALISATION).array > 0, truth.array > 0)
                        for i, truth in cases])

    supervised = _train(labelled, [], unlabelled, "supervised")
    sfr = _train(labelled, pseudo_volumes, unlabelled, "mean_teacher")
    sfr_study, supervised_study = score(sfr, study), score(supervised, study)
    assert sfr_study > pseudo_dice + 0.03, (sfr_study, pseudo_dice)
    assert sfr_study > supervised_study + 0.2, (sfr_study, supervised_study)
    sfr_held_out, supervised_held_out = score(sfr, held_out), score(supervised, held_out)
    untrained = _train(labelled, [], unlabelled, "supervised", iterations=0)
    baselines = {
        "supervised-only": supervised_held_out,
        "untrained": score(untrained, held_out),
        "best threshold": max(np.mean([dice(i.array > t, truth.array > 0) for i, truth in held_out])
                              for t in np.linspace(0.0, 1.5, 31)),
        "copy of the labelled mask": np.mean([dice(labels.array > 0, truth.array > 0) for _, truth in held_out]),
    }
    print("held-out Dice: SFR", round(sfr_held_out, 3), {k: round(float(v), 3) for k, v in baselines.items()})
    best = max(baselines, key=baselines.get)
    assert sfr_held_out > baselines[best] + HELD_OUT_MARGIN, (sfr_held_out, best, baselines)
