"""PSNR-Y as the results tables give it, fast enough to report for every photo of a run."""
import numpy as np

Y_WEIGHTS = np.array([65.481, 128.553, 24.966], np.float32) / 255  # BT.601 luma of RGB in [0, 1], as BasicSR's


def psnr_y(images, gt):
    """PSNR-Y in dB of each ``(H, W, 3)`` RGB image in [0, 1] of ``images`` against ``gt``: BasicSR's
    ``calculate_psnr(..., crop_border=4, test_y_channel=True)`` (docs/results.md), many times faster (Y in float32, the
    GT's once; docs/benchmarks.md)."""
    target = gt[4:-4, 4:-4] @ Y_WEIGHTS  # Y's offset of 16 cancels in the differences
    return [
        10 * np.log10(1 / np.mean(np.square(image[4:-4, 4:-4] @ Y_WEIGHTS - target, dtype=np.float64)))
        for image in images
    ]
