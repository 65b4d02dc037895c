"""Side-by-side images: labelled panels of one photo at the output's size, with its face boxes."""
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
