"""The model API shipped with mlops-cfn (data/model_api): where its files are, and the tag its
image gets.

The tag is the content's: the first 16 hex digits of the SHA-256 of the Dockerfile, the pinned
requirements and the app, in that order (what README's `cat Dockerfile requirements.txt app.py |
sha256sum | cut -c1-16` computes). The same files always give the same tag, so the delivery
pipeline builds an image only for a tag its repository does not hold yet, and ECR's immutable
tags never meet two images under one name.
"""

import hashlib
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent / "data" / "model_api"
IMAGE_FILES = ("Dockerfile", "requirements.txt", "app.py")
TAG_LENGTH = 16


def image_tag() -> str:
    digest = hashlib.sha256()
    for name in IMAGE_FILES:
        digest.update((APP_DIR / name).read_bytes())
    return digest.hexdigest()[:TAG_LENGTH]
