"""Side-by-side images: labelled panels of one photo at the output's size, with its face boxes; a face's panels."""
import cv2
import numpy as np

LABEL_HEIGHT = 24
BOX_COLOUR = (0, 255, 0)  # RGB


def compose(panels, boxes):
    """One ``(H + LABEL_HEIGHT, k * W, 3)`` float32 RGB image in [0, 1] from ``panels``, k ``(label, image)`` pairs
    (images ``(h, w, 3)`` float RGB in [0, 1], the LQ first, each resized to the second's H x W), with ``boxes``
    (``(x0, y0, x1, y1)``, LQ pixels) drawn on each."""
    height, width = panels[1][1].shape[:2]
    scale_x, scale_y = width / panels[0][1].shape[1], height / panels[0][1].shape[0]
    tiles = []
    for label, image in panels:
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
        tile = np.zeros((height + LABEL_HEIGHT, width, 3), np.uint8)  # OpenCV draws text on 8 bits only
        tile[LABEL_HEIGHT:] = np.clip(image * 255, 0, 255).round()
        for x0, y0, x1, y1 in boxes:
            corner0 = (round(x0 * scale_x), LABEL_HEIGHT + round(y0 * scale_y))
            corner1 = (round(x1 * scale_x), LABEL_HEIGHT + round(y1 * scale_y))
            cv2.rectangle(tile, corner0, corner1, BOX_COLOUR, 2)
        cv2.putText(tile, label, (4, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1).astype(np.float32) / 255


def heat_map(values):
    """``(h, w)`` values in [0, 1] -> ``(h, w, 3)`` float32 RGB in [0, 1], cv2's inferno colours (0 black, 1 yellow)."""
    pixels = cv2.applyColorMap((np.clip(values, 0, 1) * 255).round().astype(np.uint8), cv2.COLORMAP_INFERNO)
    return pixels[:, :, ::-1].astype(np.float32) / 255


def face_panels(pair, weights, restored='restored'):
    """One face pair as one image (:func:`compose`): LQ face | its ``restored`` face (valid pixels) | ``weights``
    ``(4h, 4w)`` / their max as a :func:`heat_map`; ``weights`` None: W = 1 on the valid pixels."""
    weights = pair.mask.astype(np.float32) if weights is None else weights
    peak = float(weights.max())
    shown = heat_map(weights / peak if peak > 0 else weights)
    return compose([('LQ face', pair.lq), (restored, pair.hq * pair.mask[:, :, None]), (f'W / {peak:.3g}', shown)], [])
