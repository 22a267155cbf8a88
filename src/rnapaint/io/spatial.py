"""SpatialData ↔ AnnData with scanpy's ``uns['spatial']``: sections with their image, spots and table.

Each library (section) becomes a coordinate system named after it, in full-resolution image pixels;
its H&E an image element ``{lib}_image`` (the ``hires`` copy, scaled into that system), its spots a
circles element ``{lib}_spots``, and the expression one table annotating all spot elements.
"""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import pandas as pd


def library_of_each_spot(
    adata: ad.AnnData,
    libs: list[str],
    library_id: str | None = None,
    library_key: str | None = None,
    allow_missing: bool = False,
) -> np.ndarray:
    """The ``uns['spatial']`` library of every observation ``(n_obs,)``.

    One library for all (``library_id``), else an obs column: ``library_key`` or the first of
    ``library_id``, ``section``, ``sample``, ``batch`` whose values are library names; else the
    only library, when there is one.
    With ``allow_missing``, the column may also name libraries that ``uns['spatial']`` lacks (e.g.
    sections without an image), as long as one of its values is a library; those values are
    returned as they are, for the caller to handle.
    """
    if library_id is not None:
        if library_id not in libs:
            raise ValueError(f"library_id {library_id!r} is not in adata.uns['spatial'] ({libs}).")
        return np.full(adata.n_obs, library_id, dtype=object)
    if library_key is not None and library_key not in adata.obs:
        raise ValueError(f"library_key {library_key!r} is not an obs column.")
    keys = [library_key] if library_key else ["library_id", "section", "sample", "batch"]
    keys = [k for k in keys if k in adata.obs]
    for k in keys:
        if set(adata.obs[k].astype(str)) <= set(libs):
            return adata.obs[k].astype(str).to_numpy(object)
    if allow_missing:  # a column naming the libraries, some of which have no entry (no image)
        for k in keys:
            if set(adata.obs[k].astype(str)) & set(libs):
                return adata.obs[k].astype(str).to_numpy(object)
    if len(libs) == 1 and library_key is None:
        return np.full(adata.n_obs, libs[0], dtype=object)
    if library_key is not None:
        extra = sorted(set(adata.obs[library_key].astype(str)) - set(libs))
        raise ValueError(
            f"obs[{library_key!r}] names {len(extra)} libraries that adata.uns['spatial'] does not hold "
            f"({', '.join(extra[:10])}); uns['spatial'] holds {libs}."
        )
    raise ValueError(
        f"adata.uns['spatial'] holds {len(libs)} libraries: say which spot belongs to which with "
        "library_key= (an obs column of library ids) or pick one with library_id=."
    )


def to_spatialdata(
    adata: ad.AnnData, library_key: str | None = None, spatial_key: str = "spatial", table_key: str = "table"
) -> Any:
    """Convert spots with ``uns['spatial']`` images into a :class:`spatialdata.SpatialData`.

    Parameters
    ----------
    adata
        Spots with ``obsm[spatial_key]`` (full-resolution pixels) and ``uns['spatial']``.
    library_key
        obs column naming each spot's library when there are several.
    spatial_key
        obsm key of the spot centres.
    table_key
        Name of the table element.

    Returns
    -------
    SpatialData with ``{lib}_image``, ``{lib}_spots`` per library and the table (region column
    ``region``, instance column ``instance_id``). Scale factors and source-image metadata travel in
    ``table.uns['rnapaint_spatial']``.

    Raises
    ------
    ValueError
        If ``adata.uns['spatial']`` is empty, the libraries cannot be told apart, or ``adata.obs``
        already has a ``region`` or ``instance_id`` column (it would be replaced: rename it first).
    """
    import spatialdata as sd
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale

    if "spatial" not in adata.uns or not adata.uns["spatial"]:
        raise ValueError("adata.uns['spatial'] holds no image to convert.")
    # The table's own annotation columns would silently replace a user's columns of these names.
    for col, role in (("region", "region"), ("instance_id", "instance")):
        if col in adata.obs:
            raise ValueError(
                f"adata.obs has a column {col!r}, the name of the SpatialData table's {role} column that "
                f"to_spatialdata writes: it would be lost. Rename it first, e.g. "
                f"adata.obs.rename(columns={{{col!r}: 'my_{col}'}}, inplace=True)."
            )
    libs = list(adata.uns["spatial"])
    spot_lib = library_of_each_spot(adata, libs, library_key=library_key)
    xy = np.asarray(adata.obsm[spatial_key], dtype=np.float64)[:, :2]
    images, shapes, extras = {}, {}, {}
    region = np.empty(adata.n_obs, dtype=object)
    instance = np.zeros(adata.n_obs, dtype=np.int64)
    for lib in pd.unique(spot_lib):
        entry = adata.uns["spatial"][lib]
        sf = dict(entry.get("scalefactors", {}))
        rows = np.flatnonzero(spot_lib == lib)
        # The H&E as {lib}_image; other images with a scale factor (a virtual H&E, its spread) as {lib}_{key}.
        for key, img in (entry.get("images") or {}).items():
            if key == "lowres" or f"tissue_{key}_scalef" not in sf:
                continue
            img = np.asarray(img)
            if img.dtype != np.uint8:
                img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
            s = 1.0 / float(sf[f"tissue_{key}_scalef"])
            images[f"{lib}_image" if key == "hires" else f"{lib}_{key}"] = Image2DModel.parse(
                np.moveaxis(img[..., :3], -1, 0),
                dims=("c", "y", "x"),
                c_coords=["r", "g", "b"],
                transformations={str(lib): Scale([s, s], axes=("y", "x"))},
            )
        radius = float(sf.get("spot_diameter_fullres", 1.0)) / 2
        shapes[f"{lib}_spots"] = ShapesModel.parse(
            xy[rows],
            geometry=0,
            radius=np.full(len(rows), radius),
            index=np.arange(len(rows)),
            transformations={str(lib): Identity()},
        )
        region[rows] = f"{lib}_spots"
        instance[rows] = np.arange(len(rows))
        extras[str(lib)] = {"scalefactors": sf, "metadata": dict(entry.get("metadata", {}) or {})}
    table = adata.copy()
    del table.uns["spatial"]
    table.obs["region"] = pd.Categorical(region)
    table.obs["instance_id"] = instance
    table.uns["rnapaint_spatial"] = extras
    table = TableModel.parse(table, region=sorted(shapes), region_key="region", instance_key="instance_id")
    return sd.SpatialData(images=images, shapes=shapes, tables={table_key: table})


def _image_array(element) -> np.ndarray:
    if hasattr(element, "children") and "scale0" in getattr(element, "children", {}):  # multiscale
        element = next(iter(element["scale0"].values()))
    return np.moveaxis(np.asarray(element.values), 0, -1)


def _pure_scale(m: np.ndarray, name: str, lib: str) -> float:
    """The one scale factor of an image → coordinate-system affine ``(3, 3)``; raise for anything else.

    scanpy's ``uns['spatial']`` relates the hires image to spot coordinates by one number
    (``tissue_hires_scalef``): a translation (a cropped image), a rotation, a flip or different x/y
    scales cannot be written there, and dropping them would misplace every spot on the image.
    """
    sx, sy = float(m[0, 0]), float(m[1, 1])
    tol = 1e-6 * max(abs(sx), abs(sy), 1.0)
    problems = []
    if abs(m[0, 2]) > tol or abs(m[1, 2]) > tol:
        problems.append(f"a translation ({m[0, 2]:g}, {m[1, 2]:g})")
    if abs(m[0, 1]) > tol or abs(m[1, 0]) > tol:
        problems.append("a rotation or shear")
    if sx <= 0 or sy <= 0:
        problems.append(f"a flip (scale x {sx:g}, y {sy:g})")
    elif abs(sx - sy) > 1e-6 * max(sx, sy):
        problems.append(f"unequal x/y scales ({sx:g}, {sy:g})")
    if problems:
        raise ValueError(
            f"Image {name!r} maps to coordinate system {lib!r} with {' and '.join(problems)}; scanpy's "
            "uns['spatial'] can only hold an image scaled by one factor to the spot coordinates. Transform the "
            "image and spots so that the image needs only a scale (e.g. crop the spots with it, or write the "
            "image back in spot coordinates), then convert."
        )
    return sx


def _libraries(sdata: Any, regions: list[str]) -> dict[str, str]:
    """The coordinate system each region's spots are read in: its library.

    A region mapped to several systems takes one holding an image, preferring a system no other
    region uses (readers often map every section to a shared ``"global"`` as well as its own).
    Regions left sharing a system share its image, which is right when it holds one image (capture
    areas of one slide) and ambiguous when it holds several.
    """
    from spatialdata.transformations import get_transformation

    image_cs = {name: set(get_transformation(img, get_all=True)) for name, img in sdata.images.items()}
    region_cs = {reg: list(get_transformation(sdata.shapes[reg], get_all=True)) for reg in regions}

    def images_in(cs: str) -> list[str]:
        return [name for name, systems in image_cs.items() if cs in systems]

    lib = {}
    for reg, systems in region_cs.items():
        with_image = [cs for cs in systems if images_in(cs)]
        own = [cs for cs in with_image if sum(cs in other for other in region_cs.values()) == 1]
        lib[reg] = (own or with_image or systems)[0]
    for cs in sorted(set(lib.values())):
        shared = [reg for reg, c in lib.items() if c == cs]
        if len(shared) > 1 and len(images_in(cs)) > 1:
            raise ValueError(
                f"Regions {shared} all lie in coordinate system {cs!r}, which holds {len(images_in(cs))} images "
                f"({', '.join(images_in(cs))}): which image belongs to which section cannot be told. Give each "
                "section its own coordinate system (spatialdata.transformations.set_transformation(element, "
                "transform, to_coordinate_system=<section>) on its spots and its image), then convert."
            )
    return lib


def from_spatialdata(sdata: Any, table_key: str = "table", spatial_key: str = "spatial") -> ad.AnnData:
    """Spots of a :class:`spatialdata.SpatialData` as an AnnData with scanpy's ``uns['spatial']``.

    The table's regions must be circle (spot) elements; each region's coordinate system is one
    library (a region in several systems takes one holding an image, preferably its own rather than
    one shared with other regions), whose image (the element of that system) becomes
    ``uns['spatial'][lib]['images']['hires']`` with the matching ``tissue_hires_scalef``. Spot
    centres, in that system's units, go to ``obsm[spatial_key]``; ``obs['library_id']`` names each spot's library.

    Raises
    ------
    ValueError
        If the table is missing or annotates no circles, or an image's transformation to its
        library is more than one scale factor (a translation, rotation, flip or unequal x/y
        scales), which ``uns['spatial']`` cannot express; or if several regions share a coordinate
        system holding several images, so that no image can be assigned to a region.
    """
    from spatialdata.transformations import get_transformation

    if table_key not in sdata.tables:
        raise ValueError(f"SpatialData has no table {table_key!r}; tables: {list(sdata.tables)}.")
    table = sdata.tables[table_key]
    attrs = table.uns.get("spatialdata_attrs", {})
    region_key, instance_key = attrs.get("region_key"), attrs.get("instance_key")
    if region_key is None or instance_key is None:
        raise ValueError(f"Table {table_key!r} does not annotate any element (no region/instance keys).")
    extras = table.uns.get("rnapaint_spatial", {})
    out = table.copy()
    xy = np.full((out.n_obs, 2), np.nan)
    lib_of = np.empty(out.n_obs, dtype=object)
    spatial: dict[str, Any] = {}
    regions = [str(r) for r in pd.unique(out.obs[region_key].astype(str))]
    for reg in regions:
        if reg not in sdata.shapes:
            raise ValueError(f"Region {reg!r} is not a shapes element; rnapaint reads spots as circles.")
    libraries = _libraries(sdata, regions)
    for reg in regions:
        gdf = sdata.shapes[reg]
        transforms = get_transformation(gdf, get_all=True)
        lib = libraries[reg]
        m = transforms[lib].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
        pts = np.c_[gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy(), np.ones(len(gdf))] @ m.T
        rows = np.flatnonzero(out.obs[region_key].astype(str).to_numpy() == reg)
        pos = pd.Index(gdf.index).get_indexer(out.obs[instance_key].to_numpy()[rows])
        if (pos < 0).any():
            raise ValueError(f"{(pos < 0).sum()} table rows of {reg!r} have no matching spot.")
        xy[rows] = pts[pos, :2]
        lib_of[rows] = lib
        entry: dict[str, Any] = {"images": {}, "scalefactors": {}, "metadata": {}}
        extra_sf = extras.get(lib, {}).get("scalefactors", {})
        for name, img in sdata.images.items():  # images to_spatialdata wrote beside the H&E go back by name
            key = name[len(f"{lib}_") :] if name.startswith(f"{lib}_") else None
            tr = get_transformation(img, get_all=True)
            if key and key != "image" and f"tissue_{key}_scalef" in extra_sf and lib in tr:
                s = _pure_scale(tr[lib].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), name, lib)
                entry["images"][key] = _image_array(img)
                entry["scalefactors"][f"tissue_{key}_scalef"] = 1.0 / s
        for name, img in sdata.images.items():
            key = name[len(f"{lib}_") :] if name.startswith(f"{lib}_") else None
            if key in entry["images"]:
                continue
            tr = get_transformation(img, get_all=True)
            if lib in tr:
                s = _pure_scale(tr[lib].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), name, lib)
                arr = _image_array(img)
                if arr.dtype != np.uint8:  # spatialdata allows float images, in [0, 1] or [0, 255]
                    top = 1.0 if float(arr.max()) <= 1.0 else 255.0
                    arr = (np.clip(arr / top, 0, 1) * 255).round().astype(np.uint8)
                entry["images"]["hires"] = arr
                entry["scalefactors"]["tissue_hires_scalef"] = 1.0 / s
                entry["metadata"]["image_element"] = name
                break
        if "radius" in gdf:
            entry["scalefactors"]["spot_diameter_fullres"] = float(2 * np.median(gdf["radius"]) * abs(m[0, 0]))
        extra = extras.get(lib, {})
        entry["scalefactors"] = {**extra.get("scalefactors", {}), **entry["scalefactors"]}
        entry["metadata"] = {**extra.get("metadata", {}), **entry["metadata"]}
        spatial[lib] = entry
    out.obsm[spatial_key] = xy
    out.obs["library_id"] = pd.Categorical(lib_of)
    out.obs = out.obs.drop(columns=[region_key, instance_key])
    out.uns.pop("spatialdata_attrs", None)
    out.uns.pop("rnapaint_spatial", None)
    out.uns["spatial"] = spatial
    return out
