"""The SAMFewShot self-test's heavy part (opt-in: SAMFEWSHOT_HEAVY_SELF_TEST=1), kept out of
Slicer's CI as TotalSegmentator keeps its logic test: MRHead (downloaded), a long elastix run
cancelled, and an atlas made from the drawn ball and applied back."""

import os
import time

import numpy as np

import slicer


def runHeavySelfTests(test) -> None:
    """Run the heavy tests on a SAMFewShotTest (its logic, assertions and delayDisplay)."""
    test.setUp()
    cancelLeavesSceneUnchanged(test)
    test.setUp()
    atlasFromDrawnSegmentComesBackNamed(test)


def drawMRHeadBall(test, drawnOffsets=(-9, 0, 9)):
    """MRHead with a bright ball (radius 25 mm) painted in; the ball drawn on the slices at
    ``drawnOffsets`` from its center (all slices when None).

    Returns (volume, segmentation, segmentId, ball (k, j, i) bool, drawn slice indices).
    """
    import SampleData

    volume = SampleData.downloadSample("MRHead")
    voxels = slicer.util.arrayFromVolume(volume)
    spacing = np.array(volume.GetSpacing())[::-1]  # (k, j, i) in mm
    center = np.array(voxels.shape) // 2
    k, j, i = np.ogrid[: voxels.shape[0], : voxels.shape[1], : voxels.shape[2]]
    distance2 = (
        ((k - center[0]) * spacing[0]) ** 2 + ((j - center[1]) * spacing[1]) ** 2 + ((i - center[2]) * spacing[2]) ** 2
    )
    ball = distance2 <= 25.0 ** 2
    brightness = min(float(np.iinfo(voxels.dtype).max) if voxels.dtype.kind in "iu" else 1e6, float(voxels.max()) * 1.5 + 100)
    voxels[ball] = brightness
    slicer.util.arrayFromVolumeModified(volume)

    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "SAMFewShotTest")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentId = segmentation.GetSegmentation().AddEmptySegment("", "ball")
    drawnSlices = list(range(voxels.shape[0])) if drawnOffsets is None else [int(center[0]) + d for d in drawnOffsets]
    drawn = np.zeros(voxels.shape, np.uint8)
    drawn[drawnSlices] = ball[drawnSlices]
    slicer.util.updateSegmentBinaryLabelmapFromArray(drawn, segmentation, segmentId, volume)
    return volume, segmentation, segmentId, ball, drawnSlices


def cancelLeavesSceneUnchanged(test):
    """Cancel kills the child tree, removes its files and leaves the scene exactly as it was."""
    test.delayDisplay("Starting cancel test")
    volume, segmentation, segmentId, ball, drawnSlices = drawMRHeadBall(test)
    drawn = test.logic.scene.segmentMask(volume, segmentation, segmentId)
    nodesBefore = test.logic.scene.sceneNodeIds()

    # elastix slice registration takes tens of seconds on MRHead: still running when cancelled
    job = test.logic.propagation.start(volume, segmentation, segmentId, engine="register:elastix")
    test.assertTrue(job.running)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        test.logic.jobs.pollJob(job)
        slicer.app.processEvents()
        time.sleep(0.05)
    test.assertTrue(job.running, "the job finished before it could be cancelled")
    test.logic.jobs.cancelJob(job)

    test.assertFalse(job.running)
    test.assertTrue(job.runner.cancelled)
    test.assertFalse(os.path.exists(job.folder))
    test.assertEqual(test.logic.scene.sceneNodeIds(), nodesBefore)
    test.assertTrue(np.array_equal(test.logic.scene.segmentMask(volume, segmentation, segmentId), drawn))
    with test.assertRaises(RuntimeError):
        test.logic.propagation.finish(job)
    test.delayDisplay("Cancel test passed")


def atlasFromDrawnSegmentComesBackNamed(test):
    """An atlas made of MRHead and the whole drawn ball (`samfewshot atlas create`), applied to
    the same volume: the preview holds a segment named "ball" covering the ball; Reject leaves
    the scene as it was, Accept adds the segment to a segmentation."""
    test.delayDisplay("Starting atlas test")
    volume, segmentation, segmentId, ball, drawnSlices = drawMRHeadBall(test, drawnOffsets=None)
    bundle = os.path.join(slicer.app.temporaryPath, f"SAMFewShotTest-{os.getpid()}-ball.zip")
    if os.path.exists(bundle):
        os.remove(bundle)
    try:
        job = test.logic.atlas.startCreate(volume, segmentation, bundle, name="ball atlas")
        test.logic.jobs.waitForJob(job, 600)
        test.assertEqual(test.logic.atlas.finishCreate(job), bundle)
        job = test.logic.atlas.startInfo(bundle)
        test.logic.jobs.waitForJob(job, 300)
        info = test.logic.atlas.finishInfo(job)
        test.assertEqual([label.name for label in info.labels], ["ball"])

        nodesBefore = test.logic.scene.sceneNodeIds()
        job = test.logic.atlas.startApply(volume, bundle)
        test.logic.jobs.waitForJob(job, 1800)
        result = test.logic.atlas.finishApply(job)
        preview = test.logic.atlas.createPreview(result, info.name)
        previewSegmentation = preview.GetSegmentation()
        test.assertEqual(previewSegmentation.GetNumberOfSegments(), 1)
        test.assertEqual(previewSegmentation.GetNthSegment(0).GetName(), "ball")
        found = test.logic.scene.segmentMask(volume, preview, previewSegmentation.GetNthSegmentID(0))
        test.assertGreater(test.dice(found, ball), 0.9, "the atlas applied to its own image")
        test.logic.scene.removePreview(preview)
        test.assertEqual(test.logic.scene.sceneNodeIds(), nodesBefore)

        preview = test.logic.atlas.createPreview(result, info.name)
        target = test.logic.atlas.acceptPreview(preview)
        test.assertIsNone(preview.GetScene())
        targetId = target.GetSegmentation().GetSegmentIdBySegmentName("ball")
        test.assertTrue(targetId)
        test.assertGreater(test.dice(test.logic.scene.segmentMask(volume, target, targetId), ball), 0.9)
    finally:
        if os.path.exists(bundle):
            os.remove(bundle)
    test.delayDisplay("Atlas test passed")
