"""Shop the look over HTTP: the catalogue products closest to each garment of a query, the same
`SimilarSearch` as `fashionstream similar`.

`GET /v1/similar` queries from a photo URL (fetched with the pipeline's SSRF guard and limits),
a stored garment id or a sighting id; `POST /v1/similar` from an uploaded photo (the tag
endpoint's limits). A photo is tagged on the tagger's own thread, by the one tagger the API
loads; stored garments and sightings search from their stored vectors and load no model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, UploadFile

from fashionstream.app.api.errors import ApiError
from fashionstream.app.api.routes.uploads import no_model_stack, read_upload, undecodable
from fashionstream.app.api.services import Services, services
from fashionstream.core.errors import DeadLetterReason, DecodeError, FetchError, PipelineError
from fashionstream.core.records import MAX_ID_CHARS

router = APIRouter(tags=["similar"])

MAX_URL_CHARS = 4096
_K = Query(ge=1, le=100, description="catalogue products per query garment")
_CATEGORY = Query(max_length=64, description="only products of this garment category")
_GENDER = Query(max_length=32, description="only products for this gender (catalogue labels)")


@router.get("/v1/similar")
async def similar_from_stored_or_url(
    svc: Annotated[Services, Depends(services)],
    url: Annotated[
        str | None, Query(max_length=MAX_URL_CHARS, description="a photo to search from")
    ] = None,
    garment: Annotated[int | None, Query(ge=1, description="a stored garment's id")] = None,
    sighting: Annotated[
        str | None, Query(max_length=MAX_ID_CHARS, description="a sighting id (UUID)")
    ] = None,
    k: Annotated[int, _K] = 10,
    category: Annotated[str | None, _CATEGORY] = None,
    gender: Annotated[str | None, _GENDER] = None,
) -> dict[str, Any]:
    """For each garment of the query, the k closest catalogue products (nearest first, cosine
    distance between appearance embeddings of one model version). Give exactly one of `url`,
    `garment`, `sighting`."""
    given = [name for name, v in (("url", url), ("garment", garment), ("sighting", sighting)) if v]
    if len(given) != 1:
        raise ApiError(
            422,
            "invalid_request",
            "give exactly one of url, garment, sighting"
            + (f" (got {', '.join(given)})" if given else ""),
        )
    search = svc.similar()
    if garment is not None:
        return await _answer(svc.blocking(search.for_garment, garment, k, category, gender))
    if sighting is not None:
        return await _answer(svc.blocking(search.for_sighting, sighting, k, category, gender))
    assert url is not None
    from fashionstream.app.similar import fetch_guarded

    try:
        photo = await svc.blocking(fetch_guarded, url, svc.settings)
    except FetchError as exc:
        if exc.reason is DeadLetterReason.ADDRESS_REFUSED:
            raise ApiError(400, "refused_address", f"refused address: {exc.detail}") from None
        raise ApiError(422, exc.reason.value, exc.detail) from None
    return await _from_photo(svc, photo, k, category, gender)


@router.post("/v1/similar")
async def similar_from_upload(
    svc: Annotated[Services, Depends(services)],
    file: Annotated[UploadFile, File(description="a photo: JPEG, PNG, GIF, BMP, TIFF or WebP")],
    k: Annotated[int, _K] = 10,
    category: Annotated[str | None, _CATEGORY] = None,
    gender: Annotated[str | None, _GENDER] = None,
) -> dict[str, Any]:
    """`GET /v1/similar?url=` for an uploaded photo."""
    photo = await read_upload(file, svc.settings.fetch_max_bytes)
    return await _from_photo(svc, photo, k, category, gender)


async def _from_photo(
    svc: Services, photo: bytes, k: int, category: str | None, gender: str | None
) -> dict[str, Any]:
    search = svc.similar()
    return await _answer(svc.tag(lambda _tagger: search.for_image(photo, k, category, gender)))


async def _answer(pending: Any) -> dict[str, Any]:
    """The search's JSON, its refusals as 4xx (SimilarError.status), an undecodable photo and a
    missing model stack as the tag endpoint answers them, a database outage as 503."""
    from fashionstream.app.similar import SimilarError
    from sinks.errors import PostgresUnavailableError

    try:
        result = await pending
    except SimilarError as exc:
        raise ApiError(exc.status, _CODES.get(exc.status, "bad_request"), str(exc)) from None
    except DecodeError as exc:
        raise undecodable(exc) from None
    except ImportError as exc:
        raise no_model_stack(exc) from None
    except PostgresUnavailableError as exc:
        raise ApiError(503, "database_unavailable", str(exc)) from None
    except PipelineError as exc:
        raise ApiError(500, exc.reason.value, exc.detail) from None
    to_json: Callable[[], dict[str, Any]] = result.to_json
    return to_json()


_CODES = {400: "bad_request", 404: "not_found", 409: "no_embedding"}
