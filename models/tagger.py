"""FashionTagger: find people, then the garments on each of them; crop each garment
(mask-aware), classify every crop of a batch in one call, read colours, and return DESIGN.md's
per-image `ImageTags`.

People first: with the camera person detector, every person it finds is cut out with some
context and scaled to one crop size (models.detection.crops), all crops of a batch of frames go
through the garment detector trained on such crops (weights/person_crops.md) in one call, and the
garments found on a person (their box centre inside that person's box) are mapped back to the
frame. A camera person 40 px tall is then seen by the garment model at about 300 px, and every
garment has its wearer by construction. Large people (model shots, close-ups) take their garments
from the whole-image garment detector, which was trained on such people, and so do images where
nobody is found (catalogue product shots).

Catalogue photos: when the detector finds neither a garment nor a person in an image whose
border is one flat colour (a studio shot), the whole product is treated as one garment: its mask
is the pixels far from the border colour (closed, holes filled, specks dropped), its category the
attribute classifier's `category` head. Camera frames never take this path: their borders are
not flat, and an empty street stays empty.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from models.attributes.calibration import UNKNOWN, stated
from models.attributes.labels import GENDER_HEAD, labels_agreeing
from models.colour import read_colour
from models.detection import crops as person_crops
from models.detection.processing import Detector
from models.people.boxes import PeopleDetector, PersonBoxes
from models.tags import (
    ColourReading,
    Detections,
    Embedding,
    FrameSource,
    GarmentTags,
    ImageTags,
    PersonTags,
    Prediction,
    ProductTags,
    RleMask,
)
from models.taxonomy import GARMENT_CATEGORIES, PERSON
from models.track_gate import GateRules, GateStats, Plan, TrackGates

Box = tuple[float, float, float, float]
CATEGORY_HEAD = "category"
STYLE_HEAD = "usage"


class AttributeRunner(Protocol):
    """What the tagger needs from the attribute classifier (torch or ONNX Runtime or a fake):
    the heads and their labels in output order, the mask-aware crop, and batched prediction."""

    @property
    def heads(self) -> Mapping[str, Sequence[str]]: ...

    def prepare(self, image: np.ndarray, box: Box | None, mask: np.ndarray | None) -> np.ndarray:
        """One garment's (S, S, 3) uint8 crop."""
        ...

    def predict(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """{head: (n_labels,) probabilities} per crop."""
        ...


@runtime_checkable
class EmbeddingRunner(Protocol):
    """An AttributeRunner whose forward also gives each crop's appearance embedding (the
    shipped classifier with the manifest's `embedding` head, torch or ONNX)."""

    @property
    def embedding_version(self) -> str: ...

    def predict_embedded(
        self, crops: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
        """`predict`'s probabilities and the (B, D) unit embeddings of the same forward."""
        ...


class TaggerSettings(Protocol):
    """The settings `from_settings` reads (fashionstream.core.settings.Settings has them all)."""

    @property
    def weights_dir(self) -> Path: ...
    @property
    def state_dir(self) -> Path: ...
    @property
    def backend(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def torch_threads(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def detection_threshold(self) -> float: ...
    @property
    def person_threshold(self) -> float: ...
    @property
    def person_input_sizes(self) -> tuple[int, ...]: ...
    @property
    def plugins(self) -> tuple[Path, ...]: ...
    @property
    def garments_per_person(self) -> bool: ...
    @property
    def garments_per_track(self) -> bool: ...
    @property
    def garment_refresh_s(self) -> float: ...


@dataclass(frozen=True)
class TaggerThresholds:
    garment: float = 0.5  # lowest garment detection score kept
    person: float = 0.5  # lowest person detection score kept
    # a garment belongs to the person whose mask holds at least this share of its pixels (most
    # wins); failing that, whose box holds at least this share of its box
    association: float = 0.5
    # one garment found on two overlapping people's crops: the same category with masks
    # overlapping this much (IoU) is one garment, the higher score kept
    duplicate_iou: float = 0.5
    # a person at least this share of the image's height tall in a photo that is not a camera
    # frame (a catalogue model shot) gets garments from the whole-image garment detector: it
    # was trained on such photos. A camera frame's people always go through the crops: on the
    # demo's store clip the whole image made a man's black jacket a dress or missed it, where
    # his crop found it (outerwear, top) beside his trousers and shoes (weights/person_crops.md)
    large_person: float = 0.6
    # catalogue fallback: a border is "flat" when this share of its pixels is within
    # `border_distance` (RGB Euclidean) of the border's median colour; product pixels are
    # those further than `product_distance` from it (20 keeps white garments on white, looked
    # at on 16 catalogue photos; 40 lost most of a white skirt)
    flat_border_share: float = 0.9
    border_distance: float = 40.0
    product_distance: float = 20.0


class FashionTagger:
    """The `Tagger` of models.tags. Construct it from built parts (tests inject fakes), or
    with `from_settings`. Call `tag` from one worker thread; it never starts threads itself."""

    def __init__(
        self,
        detector: Detector,
        classifier: AttributeRunner,
        *,
        model_version: str,
        thresholds: TaggerThresholds | None = None,
        max_batch: int = 8,
        colour: Callable[[np.ndarray, np.ndarray], ColourReading] = read_colour,
        people: PeopleDetector | None = None,
        crop_detector: Detector | None = None,
        confidence: Mapping[str, float] | None = None,
        gates: TrackGates | None = None,
    ) -> None:
        for head in (CATEGORY_HEAD, STYLE_HEAD):
            if head not in classifier.heads:
                raise ValueError(f"the attribute classifier has no {head!r} head")
        unknown = set(classifier.heads[CATEGORY_HEAD]) - set(GARMENT_CATEGORIES)
        if unknown:
            raise ValueError(f"category head labels {sorted(unknown)} are not garment categories")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.detector = detector
        # the camera person detector: when given, people come from it, not from the garment
        # detector's person class (which only knows CCP's large, upright, full-body people)
        self.people = people
        # the garment detector fed person crops (same network at the crop's input size): with
        # `people`, garments are found on each person's crop instead of the whole frame
        if crop_detector is not None and people is None:
            raise ValueError("garments per person need the person detector")
        self.crop_detector = crop_detector
        # garments once per tracked person (models.track_gate): camera frames given with their
        # source have their people's garments inferred on chosen crops and carried between them
        if gates is not None and crop_detector is None:
            raise ValueError("the track gate needs garments per person (the crop detector)")
        self.gates = gates
        # head -> lowest top probability stated; below it the attribute is `unknown`
        # (models.attributes.calibration); heads not named are always stated
        self.confidence = dict(confidence or {})
        self.classifier = classifier
        self.thresholds = thresholds or TaggerThresholds()
        self.max_batch = max_batch
        self._model_version = model_version
        self._colour = colour

    @classmethod
    def from_settings(cls, settings: TaggerSettings) -> FashionTagger:
        """The shipped networks from `settings.weights_dir` (sha256-checked) on the settings'
        backend/device/threads (models.runtime.placement); thresholds and batch size from the
        settings. On the onnx backend they run from the graphs shipped in weights/ and torch is
        never imported; the torch backend sets torch's CPU threads (settings.torch_threads, at
        most the cores)."""
        from models import weights as W
        from models.attributes.calibration import thresholds_from
        from models.runtime import shipped
        from models.runtime.placement import resolve_runtime
        from models.runtime.plugins import PluggedAttributes, load_plugins

        runtime = resolve_runtime(
            str(settings.backend),
            str(settings.device),
            settings.torch_threads,
            settings.state_dir / "onnx",
        )
        if runtime.backend == "torch":
            import torch

            torch.set_num_threads(runtime.threads)
        threshold = settings.detection_threshold
        manifest = W.load_manifest(settings.weights_dir)  # read once, handed to every loader
        plugins = load_plugins(
            settings.plugins,
            runtime,
            person_threshold=settings.person_threshold,
            person_input_sizes=settings.person_input_sizes,
            garment_threshold=threshold,
        )
        detector: Detector
        if plugins.garments is not None:
            detector, detector_version = plugins.garments, plugins.garments.version
        else:
            detector, detector_entry = shipped.garment_detector(
                settings.weights_dir, W.DETECTOR_ENTRY, runtime, threshold, manifest
            )
            detector_version = detector_entry.version
        shipped_runner, attributes_entry = shipped.attribute_classifier(
            settings.weights_dir, runtime, manifest
        )
        runner: AttributeRunner = shipped_runner
        if plugins.classifiers:
            runner = PluggedAttributes(shipped_runner, plugins.classifiers)
        # the shipped heads' calibrated thresholds say nothing of a plug-in's head
        calibration = thresholds_from(attributes_entry.metrics.get("calibration", {}))
        confidence = {h: t for h, t in calibration.items() if h not in plugins.heads}
        version = f"det:{detector_version}+attr:{attributes_entry.version}"
        people: PeopleDetector | None = None
        crop_detector: Detector | None = None
        person_threshold, gates = threshold, None
        if W.PEOPLE_ENTRY in manifest or plugins.people is not None:
            person_threshold = settings.person_threshold
            if plugins.people is not None:
                people = plugins.people
            else:
                people, people_entry = shipped.people_detector(
                    settings.weights_dir,
                    runtime,
                    person_threshold,
                    manifest,
                    input_sizes=settings.person_input_sizes,
                )
                version = f"{version}+people:{people_entry.version}"
            if settings.garments_per_person and plugins.garments is not None:
                crop_detector = plugins.garments  # it fits each person crop itself
            elif settings.garments_per_person and W.PERSON_CROPS_ENTRY in manifest:
                on_crops, crops_entry = shipped.garment_detector(
                    settings.weights_dir, W.PERSON_CROPS_ENTRY, runtime, threshold, manifest
                )
                crop_detector = on_crops.at_input_size(
                    person_crops.CROP_WIDTH, person_crops.CROP_HEIGHT
                )
                version = f"{version}+crops:{crops_entry.version}"
            if crop_detector is not None and settings.garments_per_track:
                gates = TrackGates(GateRules(min_interval_s=settings.garment_refresh_s))
        for plugged in plugins.versions:
            version = f"{version}+plugin:{plugged}"
        return cls(
            detector,
            runner,
            model_version=version,
            thresholds=TaggerThresholds(garment=threshold, person=person_threshold),
            max_batch=settings.batch_size,
            people=people,
            crop_detector=crop_detector,
            confidence=confidence,
            gates=gates,
        )

    @property
    def model_version(self) -> str:
        """ "det:<detector version>+attr:<classifier version>[+people:<person detector
        version>[+crops:<person-crop detector version>]]][+plugin:<spec name>-<sha256[:8]>...]",
        from the weights manifest and the plug-ins' specs; "+crops": garments found per person;
        a plug-in person detector replaces "+people"."""
        return self._model_version

    @property
    def embedding_version(self) -> str:
        """The appearance embedding's model version, "" when the classifier has none."""
        if isinstance(self.classifier, EmbeddingRunner):
            return self.classifier.embedding_version
        return ""

    def _classify(
        self, crops: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
        """Every crop's probabilities and, in the same call, its embedding (when shipped)."""
        if self.embedding_version and isinstance(self.classifier, EmbeddingRunner):
            probabilities, vectors = self.classifier.predict_embedded(crops)
            if vectors is not None and len(vectors) != len(crops):
                raise ValueError(f"{len(vectors)} embeddings for {len(crops)} crops")
            return probabilities, vectors
        return self.classifier.predict(crops), None

    def tag(
        self,
        images: Sequence[np.ndarray],
        *,
        catalogue: Sequence[bool] | None = None,
        sources: Sequence[FrameSource | None] | None = None,
    ) -> list[ImageTags]:
        """RGB uint8 (H, W, 3) images -> one ImageTags each, in order. Runs in chunks of at most
        `max_batch` images; each stage's time is shared equally by a chunk's images.
        `catalogue[i]`: image i is a catalogue product photo; with a shipped embedding its
        ImageTags gets the `product` of its whole-product crop (one more crop in the same
        classifier call). `sources[i]`: the camera and capture time of a camera frame (frames of
        one camera in capture order): with the track gate, its people's garments are inferred
        once per track on chosen crops and carried to its other frames."""
        flags = [False] * len(images) if catalogue is None else [bool(c) for c in catalogue]
        if len(flags) != len(images):
            raise ValueError(f"{len(flags)} catalogue flags for {len(images)} images")
        origins = [None] * len(images) if sources is None else list(sources)
        if len(origins) != len(images):
            raise ValueError(f"{len(origins)} sources for {len(images)} images")
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"image {i}: expected RGB uint8 (H, W, 3), got {image.shape} {image.dtype}"
                )
        out: list[ImageTags] = []
        for start in range(0, len(images), self.max_batch):
            chunk = slice(start, start + self.max_batch)
            out.extend(self._tag_chunk(images[chunk], flags[chunk], origins[chunk]))
        return out

    @property
    def gate_stats(self) -> GateStats | None:
        """People seen, inferred, carried and tracks counted by the track gate (None without)."""
        return None if self.gates is None else self.gates.stats

    def _tag_chunk(
        self,
        images: Sequence[np.ndarray],
        catalogue: list[bool],
        sources: Sequence[FrameSource | None],
    ) -> list[ImageTags]:
        clock = _StageClock()
        plans: list[list[Plan] | None] = [None] * len(images)
        if self.crop_detector is not None:
            found, plans = self._find_per_person(images, sources, clock)
        else:
            detections = self.detector.detect(images)
            clock.lap("detect")
            person_boxes: list[PersonBoxes | None] = [None] * len(images)
            if self.people is not None:
                person_boxes = list(self.people.detect(images))
                clock.lap("people")
            found = [
                self._split(image, d, p)
                for image, d, p in zip(images, detections, person_boxes, strict=True)
            ]
        found = [(self._with_wearers(garments, people), people) for garments, people in found]
        # every garment's crop, then the crop of each person wearing one (their gender), then
        # a catalogue photo's whole-product crop (when the embedding is shipped): all in one call
        embedding = bool(self.embedding_version)
        crops: list[np.ndarray] = []
        wearers: list[list[int]] = []
        # per image: None (no product), the index of its fallback garment (that garment's crop
        # is the product crop: reused, not cut twice), or -1 (one more crop, after the people)
        products: list[int | None] = []
        for image, (garments, people), is_product in zip(images, found, catalogue, strict=True):
            crops.extend(self.classifier.prepare(image, g.box, g.mask) for g in garments)
            worn = sorted({g.person for g in garments if g.person is not None})
            crops.extend(self.classifier.prepare(image, people[j].box, None) for j in worn)
            wearers.append(worn)
            product: int | None = None
            if is_product and embedding:
                fallback = [k for k, g in enumerate(garments) if g.category is None]
                product = fallback[0] if fallback else -1
                if product == -1:
                    crops.append(self._product_crop(image))
            products.append(product)
        clock.lap("crop")
        probabilities, vectors = self._classify(crops)
        clock.lap("classify")
        assembled = []
        cursor = 0
        for image, (garments, people), worn, product in zip(
            images, found, wearers, products, strict=True
        ):
            start = cursor
            probs = probabilities[cursor : cursor + len(garments)]
            embeddings: list[Embedding | None] = [None] * len(garments)
            if vectors is not None:
                version = self.embedding_version
                embeddings = [
                    Embedding(version, v) for v in vectors[cursor : cursor + len(garments)]
                ]
            cursor += len(garments)
            person_probs = dict(zip(worn, probabilities[cursor : cursor + len(worn)], strict=True))
            cursor += len(worn)
            product_tags = None
            if product is not None and vectors is not None:
                at = start + product if product >= 0 else cursor
                product_tags = self._product(probabilities[at], vectors[at])
                cursor += 1 if product == -1 else 0
            garment_tags, person_tags = self._assemble(
                image, garments, people, probs, person_probs, embeddings
            )
            assembled.append((garment_tags, person_tags, product_tags))
        # in frame order: inferred garments become their tracks' best, the others carry them
        for i, (plan, source) in enumerate(zip(plans, sources, strict=True)):
            if plan is None or source is None or self.gates is None:
                continue
            garment_tags, person_tags, product_tags = assembled[i]
            resolved = self.gates.of(source).resolve(
                plan, [p.box for p in found[i][1]], garment_tags, images[i].shape[:2]
            )
            assembled[i] = (tuple(resolved), person_tags, product_tags)
        clock.lap("colour_and_assemble")
        share = {stage: seconds / len(images) for stage, seconds in clock.stages.items()}
        share["total"] = sum(share.values())
        return [
            ImageTags(
                width=image.shape[1],
                height=image.shape[0],
                garments=garment_tags,
                people=person_tags,
                model_version=self.model_version,
                timings=dict(share),
                product=product_tags,
            )
            for image, (garment_tags, person_tags, product_tags) in zip(
                images, assembled, strict=True
            )
        ]

    def _product_crop(self, image: np.ndarray) -> np.ndarray:
        """A catalogue photo's whole-product crop: its product mask through the crop rule (the
        catalogue fallback's crop), or the whole image when it is not a studio shot."""
        mask = catalogue_product_mask(image, self.thresholds)
        if mask is None:
            return self.classifier.prepare(image, None, None)
        return self.classifier.prepare(image, mask_box(mask), mask)

    def _product(self, probabilities: Mapping[str, np.ndarray], vector: np.ndarray) -> ProductTags:
        """The product crop's category and gender (the classifier's heads, gender as calibrated)
        and its embedding."""
        labels = self.classifier.heads[CATEGORY_HEAD]
        category = str(labels[int(np.argmax(probabilities[CATEGORY_HEAD]))])
        gender = self._gender(probabilities)
        return ProductTags(category, gender, Embedding(self.embedding_version, vector))

    def _gender(self, probabilities: Mapping[str, np.ndarray]) -> str | None:
        """The gender head's label as calibrated; None when unsure or there is no such head."""
        if GENDER_HEAD not in self.classifier.heads:
            return None
        said = self._stated(
            GENDER_HEAD, self.classifier.heads[GENDER_HEAD], probabilities[GENDER_HEAD]
        )
        return None if said.label == UNKNOWN else said.label

    def _split(
        self, image: np.ndarray, detections: Detections, person_boxes: PersonBoxes | None
    ) -> tuple[list[_Garment], list[_Person]]:
        """Detections -> garments and people above their thresholds; the catalogue fallback
        when an image has no garment. People do not stop the fallback: a product shot is worn by
        a model whose clothes may go undetected, and a lone handbag on white has been taken for a
        person (catalogue fixture 2650). With `person_boxes` (the person detector's), people
        are those boxes, their masks the boxes filled."""
        names = detections.class_names
        garments: list[_Garment] = []
        people: list[_Person] = []
        for i in range(len(detections)):
            name = names[int(detections.class_ids[i])]
            score = float(detections.scores[i])
            mask = detections.masks[i]
            box = _box(detections.boxes[i])
            if box[2] <= box[0] or box[3] <= box[1] or not mask.any():
                continue  # nothing to crop or colour: a degenerate detection
            if name == PERSON:
                if person_boxes is None and score >= self.thresholds.person:
                    people.append(_Person(score, box, mask))
            elif name in GARMENT_CATEGORIES and score >= self.thresholds.garment:
                garments.append(_Garment(name, score, box, mask))
        if person_boxes is not None:
            people = self._boxed_people(image.shape[:2], person_boxes)
        if not garments:
            product = catalogue_product_mask(image, self.thresholds)
            if product is not None:
                garments.append(_Garment(None, 0.0, mask_box(product), product))
        return garments, people

    def _find_per_person(
        self,
        images: Sequence[np.ndarray],
        sources: Sequence[FrameSource | None],
        clock: _StageClock,
    ) -> tuple[list[tuple[list[_Garment], list[_Person]]], list[list[Plan] | None]]:
        """People from the person detector, garments from each small person's crop (one
        garment detector call for every crop of the chunk); large people of photos that are not
        camera frames (catalogue model shots), studio photos and images with nobody in them
        (product shots) from the whole-image garment detector and its catalogue fallback. With
        the track gate, a camera frame's people whose garments their track carries get no crop
        (their plans)."""
        if self.people is None or self.crop_detector is None:
            raise RuntimeError("garments per person need the person detector")
        people = [
            self._boxed_people(image.shape[:2], boxes)
            for image, boxes in zip(images, self.people.detect(images), strict=True)
        ]
        clock.lap("people")
        # a studio photo (flat border: a catalogue shot) is all "large": the whole-image path
        # and its catalogue fallback, whatever the person detector made of the model or product
        studio = [flat_border_colour(image, self.thresholds) is not None for image in images]
        large = [
            {
                j
                for j, p in enumerate(persons)
                if studio[i]
                or (
                    sources[i] is None
                    and p.box[3] - p.box[1] >= self.thresholds.large_person * image.shape[0]
                )
            }
            for i, (image, persons) in enumerate(zip(images, people, strict=True))
        ]
        plans = self._plan(images, sources, people, large)
        clock.lap("track")
        # the whole-image detector for images with nobody or with a large person
        whole_images = [i for i, persons in enumerate(people) if not persons or large[i]]
        owners = [
            (i, j)
            for i, (persons, plan) in enumerate(zip(people, plans, strict=True))
            for j in range(len(persons))
            if j not in large[i] and (plan is None or plan[j].infer)
        ]
        windows = [person_crops.crop_window(people[i][j].box) for i, j in owners]
        cut = [person_crops.cut(images[i], w) for (i, _), w in zip(owners, windows, strict=True)]
        garments: list[list[_Garment]] = [[] for _ in images]
        if cut:
            detections = self.crop_detector.detect(cut)
            for (i, j), window, found in zip(owners, windows, detections, strict=True):
                garments[i].extend(
                    self._garments_of_person(images[i].shape[:2], people[i][j], j, window, found)
                )
        clock.lap("detect")  # garments, on the crops
        if whole_images:
            whole = self.detector.detect([images[i] for i in whole_images])
            for i, in_whole in zip(whole_images, whole, strict=True):
                whole_garments = self._split(images[i], in_whole, None)[0]
                if len(large[i]) < len(people[i]):
                    # small people have their crops: keep what a large person wears
                    whole_garments = [
                        g
                        for g in self._with_wearers(whole_garments, people[i])
                        if g.person is not None and g.person in large[i]
                    ]
                garments[i].extend(whole_garments)
            clock.lap("detect")
        # the catalogue fallback needs a flat border, and every such image took the whole-image
        # path, whose `_split` applied it
        kept = [
            (_deduplicated(worn, self.thresholds.duplicate_iou), persons)
            for worn, persons in zip(garments, people, strict=True)
        ]
        return kept, plans

    def _plan(
        self,
        images: Sequence[np.ndarray],
        sources: Sequence[FrameSource | None],
        people: Sequence[Sequence[_Person]],
        large: Sequence[set[int]],
    ) -> list[list[Plan] | None]:
        """The gate's plan for each camera frame's people, in order; None for images the gate
        does not see. Large people take the whole-image path in every frame, never carried."""
        plans: list[list[Plan] | None] = []
        for i, (image, source) in enumerate(zip(images, sources, strict=True)):
            if self.gates is None or source is None:
                plans.append(None)
                continue
            gate = self.gates.of(source)
            planned = gate.plan(image, [p.box for p in people[i]], source.captured_at)
            plans.append(
                [Plan(None, True) if j in large[i] else plan for j, plan in enumerate(planned)]
            )
        return plans

    def _garments_of_person(
        self,
        frame_shape: tuple[int, int],
        person: _Person,
        index: int,
        window: person_crops.Window,
        found: Detections,
    ) -> list[_Garment]:
        """The garments the detector found in one person's crop, in frame coordinates: those
        whose box centre lies in the person's box (the rest belong to someone beside them)."""
        h, w = frame_shape
        boxes = person_crops.boxes_to_frame(found.boxes, window)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        px0, py0, px1, py1 = person.box
        garments = []
        for k in range(len(found)):
            name = found.class_names[int(found.class_ids[k])]
            score = float(found.scores[k])
            if name not in GARMENT_CATEGORIES or score < self.thresholds.garment:
                continue
            box = _box(boxes[k])
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if box[2] <= box[0] or box[3] <= box[1] or not (px0 <= cx <= px1 and py0 <= cy <= py1):
                continue
            mask = person_crops.mask_to_frame(found.masks[k], window, frame_shape)
            if mask.any():
                garments.append(_Garment(name, score, box, mask, person=index))
        return garments

    def _boxed_people(self, shape: tuple[int, int], found: PersonBoxes) -> list[_Person]:
        h, w = shape
        people = []
        for box, score in zip(found.boxes, found.scores, strict=True):
            x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
            x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
            if score < self.thresholds.person or x1 <= x0 or y1 <= y0:
                continue
            mask = np.zeros((h, w), bool)
            mask[y0:y1, x0:x1] = True
            people.append(_Person(float(score), _box(box), mask))
        return people

    def _with_wearers(self, garments: list[_Garment], people: list[_Person]) -> list[_Garment]:
        """Each garment with its wearer: known when found on a person's crop, else the person
        holding most of it (or nobody)."""
        return [
            g
            if g.person is not None
            else dataclasses.replace(g, person=associate(g, people, self.thresholds.association))
            for g in garments
        ]

    def _assemble(
        self,
        image: np.ndarray,
        garments: list[_Garment],
        people: list[_Person],
        probabilities: Sequence[Mapping[str, np.ndarray]],
        person_probabilities: Mapping[int, Mapping[str, np.ndarray]],
        embeddings: Sequence[Embedding | None],
    ) -> tuple[tuple[GarmentTags, ...], tuple[PersonTags, ...]]:
        person_tags = tuple(PersonTags(p.score, p.box, RleMask.encode(p.mask)) for p in people)
        genders = self._person_genders(garments, probabilities, person_probabilities)
        garment_tags = []
        for garment, garment_probs, embedding in zip(
            garments, probabilities, embeddings, strict=True
        ):
            probs = dict(garment_probs)
            if garment.person in genders:
                probs[GENDER_HEAD] = genders[garment.person]
            wearer = self._gender(probs)
            top = {
                head: self._stated(
                    head,
                    labels,
                    probs[head],
                    self._agreeing(head, labels, garment.category, wearer),
                )
                for head, labels in self.classifier.heads.items()
            }
            category, score = garment.category, garment.score
            if category is None:  # catalogue fallback: the classifier names the product
                labels = self.classifier.heads[CATEGORY_HEAD]
                category = str(labels[int(np.argmax(probs[CATEGORY_HEAD]))])
                score = min(1.0, float(np.max(probs[CATEGORY_HEAD])))
            garment_tags.append(
                GarmentTags(
                    category=category,
                    score=score,
                    box=garment.box,
                    mask=RleMask.encode(garment.mask),
                    attributes=top,
                    probabilities={
                        head: {str(lb): float(p) for lb, p in zip(labels, probs[head], strict=True)}
                        for head, labels in self.classifier.heads.items()
                    },
                    colour=self._colour(image, garment.mask),
                    style=top[STYLE_HEAD],
                    person_index=garment.person,
                    embedding=embedding,
                )
            )
        return tuple(garment_tags), person_tags

    def _person_genders(
        self,
        garments: list[_Garment],
        probabilities: Sequence[Mapping[str, np.ndarray]],
        person_probabilities: Mapping[int, Mapping[str, np.ndarray]],
    ) -> dict[int, np.ndarray]:
        """Gender is the wearer's, not the shoe's: per person, the mean of the gender
        probabilities of their own crop and of every garment they wear."""
        if GENDER_HEAD not in self.classifier.heads:
            return {}
        votes: dict[int, list[np.ndarray]] = {
            j: [probs[GENDER_HEAD]] for j, probs in person_probabilities.items()
        }
        for garment, probs in zip(garments, probabilities, strict=True):
            if garment.person is not None:
                votes.setdefault(garment.person, []).append(probs[GENDER_HEAD])
        return {j: np.mean(v, axis=0) for j, v in votes.items()}

    def _agreeing(
        self, head: str, labels: Sequence[str], category: str | None, gender: str | None
    ) -> np.ndarray | None:
        """Which of `head`'s labels a garment the detector named `category`, worn by someone
        of `gender` (None: unsure), can have (models.attributes.labels: labels_agreeing); None
        when any can: the catalogue fallback (no detection), a head the category decides
        nothing of, or one none of whose labels agree. Why: the detector saw the whole garment
        on its wearer, the classifier only the crop, so a pair of trousers seen from behind is
        not stated as a dress; and gender is voted over the whole person, so a man's dark shoes
        are not stated as Heels."""
        allowed = None if category is None else labels_agreeing(category, head, gender)
        if allowed is None:
            return None
        keep = np.array([label in allowed for label in labels])
        return keep if keep.any() else None

    def _stated(
        self,
        head: str,
        labels: Sequence[str],
        probs: np.ndarray,
        agreeing: np.ndarray | None = None,
    ) -> Prediction:
        """The head's most probable label (among the `agreeing` ones when given), or `unknown`
        when its own probability is under the head's calibrated threshold. The probabilities
        are stored as the classifier gave them: renormalising over the agreeing labels would
        inflate them past what the thresholds were calibrated on (measured: the stated article
        types of detected CCP garments were right 68% of the time that way, 81% this way)."""
        best = int(np.argmax(probs if agreeing is None else np.where(agreeing, probs, -1.0)))
        prob = min(1.0, float(probs[best]))
        return Prediction(stated(str(labels[best]), prob, self.confidence.get(head, 0.0)), prob)


@dataclass(frozen=True)
class _Garment:
    category: str | None  # None: the catalogue fallback, named by the classifier
    score: float
    box: Box
    mask: np.ndarray
    person: int | None = None  # found on this person's crop: their wearer by construction


@dataclass(frozen=True)
class _Person:
    score: float
    box: Box
    mask: np.ndarray


class _StageClock:
    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - self._last
        self._last = now


def _box(values: np.ndarray) -> Box:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


def mask_box(mask: np.ndarray) -> Box:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _deduplicated(garments: list[_Garment], max_iou: float) -> list[_Garment]:
    """Highest score first, dropping a garment whose mask overlaps a kept one of the same
    category by more than `max_iou` (found again on an overlapping neighbour's crop)."""
    kept: list[_Garment] = []
    for garment in sorted(garments, key=lambda g: -g.score):
        if not any(
            k.category == garment.category
            and _box_inside_share(garment.box, k.box) > 0
            and _mask_iou(garment.mask, k.mask) > max_iou
            for k in kept
        ):
            kept.append(garment)
    return kept


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else 0.0


def associate(garment: _Garment, people: Sequence[_Person], min_share: float) -> int | None:
    """Index of the person holding most of the garment: by mask overlap first, then by box."""
    if not people:
        return None
    area = max(int(garment.mask.sum()), 1)
    mask_share = [float((garment.mask & p.mask).sum()) / area for p in people]
    best = int(np.argmax(mask_share))
    if mask_share[best] >= min_share:
        return best
    box_share = [_box_inside_share(garment.box, p.box) for p in people]
    best = int(np.argmax(box_share))
    return best if box_share[best] >= min_share else None


def _box_inside_share(inner: Box, outer: Box) -> float:
    w = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    h = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = max((inner[2] - inner[0]) * (inner[3] - inner[1]), 1e-6)
    return w * h / area


def flat_border_colour(image: np.ndarray, thresholds: TaggerThresholds) -> np.ndarray | None:
    """The median colour of a studio photo's border, or None when the border is not one flat
    colour (a camera frame, a street photo)."""
    h, w = image.shape[:2]
    if h < 8 or w < 8:
        return None
    rim = max(2, min(h, w) // 100)
    border = np.concatenate(
        [
            image[:rim].reshape(-1, 3),
            image[-rim:].reshape(-1, 3),
            image[:, :rim].reshape(-1, 3),
            image[:, -rim:].reshape(-1, 3),
        ]
    ).astype(np.float32)
    colour = np.median(border, axis=0)
    near = np.linalg.norm(border - colour, axis=1) <= thresholds.border_distance
    if near.mean() < thresholds.flat_border_share:
        return None
    return colour


def catalogue_product_mask(image: np.ndarray, thresholds: TaggerThresholds) -> np.ndarray | None:
    """The product of a studio photo, or None when the image is not one (its border is not
    one flat colour). Pixels far from the border's median colour, closed, holes filled,
    specks (< 5% of the largest part) dropped; the whole image if nothing stands out."""
    h, w = image.shape[:2]
    colour = flat_border_colour(image, thresholds)
    if colour is None:
        return None
    distance = np.linalg.norm(image.astype(np.float32) - colour, axis=2)
    foreground = (distance > thresholds.product_distance).astype(np.uint8)
    size = max(3, (min(h, w) // 30) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_CLOSE, kernel)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, kernel)
    # holes: background pixels not connected to the image border (a white logo on a shoe)
    count, labels = cv2.connectedComponents((1 - foreground).astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, edge) & (foreground == 0)
    filled = (~background).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(filled, connectivity=8)
    if count <= 1:
        return np.ones((h, w), bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= 0.05 * areas.max()) + 1
    product = np.isin(labels, keep)
    if product.sum() < 0.002 * h * w:
        return np.ones((h, w), bool)
    return product
