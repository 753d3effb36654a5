"""Vulnerability scanners' JSON reports as ECR's findings.

Two formats are read, told apart by the document itself: Trivy's (``trivy image --format
json``: ``Results[].Vulnerabilities[]``) and Grype's (``grype -o json``: ``matches[]``). Each
vulnerability of each package becomes one :class:`~ecrstore.scan_models.ImageScanFinding` as ECR's
basic scanning shapes it: ``name`` is the vulnerability id, ``severity`` one of ECR's
(``UNKNOWN`` becomes ``UNDEFINED``, Grype's ``Negligible`` ``INFORMATIONAL``), ``attributes``
``package_name``, ``package_version``, ``fixed_in_version`` and the CVSS scores and vectors
(``CVSS3_SCORE``, ``CVSS3_VECTOR``, ``CVSS2_SCORE``, ``CVSS2_VECTOR``) the report gives.
Anything else is refused with :class:`~ecrstore.scanning.ScannerError`, never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ..scan_models import Attribute, ImageScanFinding, ScanReport
from ..scanning import ScannerError

__all__ = ["parse_report", "severity"]

_SEVERITIES = {"CRITICAL": "CRITICAL", "HIGH": "HIGH", "MEDIUM": "MEDIUM", "LOW": "LOW",
               "NEGLIGIBLE": "INFORMATIONAL", "INFORMATIONAL": "INFORMATIONAL", "INFO": "INFORMATIONAL"}
#: The service model's bounds for an attribute, and ECR's for a finding's attributes.
_MAX_VALUE = 256
_MAX_ATTRIBUTES = 50


def parse_report(data: bytes) -> ScanReport:
    """The findings of a Trivy or Grype JSON report. Raises ScannerError (a description for
    the FAILED status) for output that is not JSON, or not one of those formats."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ScannerError(f"The scanner's output is not JSON ({e}).") from None
    try:
        if isinstance(doc, dict) and isinstance(doc.get("matches"), list):
            return ScanReport(tuple(_grype(doc["matches"])), _grype_db_built(doc))
        if isinstance(doc, dict) and ("SchemaVersion" in doc or isinstance(doc.get("Results"), list)):
            return ScanReport(tuple(_trivy(doc.get("Results") or [])))
    except (TypeError, AttributeError, KeyError, ValueError) as e:
        raise ScannerError(f"The scanner's report is malformed ({type(e).__name__}: {e}).") from None
    raise ScannerError("The scanner's output is neither a Trivy nor a Grype JSON report.")


def severity(value: Any) -> str:
    """ECR's severity for a scanner's (case-insensitive); UNDEFINED for any other."""
    return _SEVERITIES.get(str(value).upper(), "UNDEFINED") if value is not None else "UNDEFINED"


def _trivy(results: list[Any]) -> Iterator[ImageScanFinding]:
    for result in results:
        for vuln in result.get("Vulnerabilities") or []:
            refs = vuln.get("References") or []
            yield _finding(
                vuln["VulnerabilityID"], vuln.get("Severity"), vuln.get("Description") or vuln.get("Title"),
                vuln.get("PrimaryURL") or (refs[0] if refs else None),
                vuln.get("PkgName"), vuln.get("InstalledVersion"), vuln.get("FixedVersion"),
                _trivy_cvss(vuln.get("CVSS") or {}),
            )


def _trivy_cvss(cvss: dict[str, Any]) -> dict[str, Any]:
    """The scores of NVD's entry when there is one, else of the first source."""
    source: dict[str, Any] = cvss.get("nvd") or next(iter(cvss.values()), {})
    return {"CVSS3_SCORE": source.get("V3Score"), "CVSS3_VECTOR": source.get("V3Vector"),
            "CVSS2_SCORE": source.get("V2Score"), "CVSS2_VECTOR": source.get("V2Vector")}


def _grype(matches: list[Any]) -> Iterator[ImageScanFinding]:
    for match in matches:
        vuln = match["vulnerability"]
        artifact = match.get("artifact") or {}
        related = match.get("relatedVulnerabilities") or []
        description = vuln.get("description") or next((r.get("description") for r in related
                                                        if r.get("description")), None)
        urls = vuln.get("urls") or []
        fix = vuln.get("fix") or {}
        fixed = ", ".join(fix.get("versions") or []) if fix.get("state") == "fixed" else None
        scores: dict[str, Any] = {}
        for entry in list(vuln.get("cvss") or []) + [c for r in related for c in r.get("cvss") or []]:
            major = str(entry.get("version", "")).partition(".")[0]
            if major in ("2", "3") and f"CVSS{major}_SCORE" not in scores:
                scores[f"CVSS{major}_SCORE"] = (entry.get("metrics") or {}).get("baseScore")
                scores[f"CVSS{major}_VECTOR"] = entry.get("vector")
        yield _finding(vuln["id"], vuln.get("severity"), description, vuln.get("dataSource") or
                       (urls[0] if urls else None), artifact.get("name"), artifact.get("version"), fixed, scores)


def _grype_db_built(doc: dict[str, Any]) -> float | None:
    db = (doc.get("descriptor") or {}).get("db") or {}
    built = db.get("built") or (db.get("status") or {}).get("built")
    if not isinstance(built, str):
        return None
    try:
        return datetime.fromisoformat(built.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _finding(name: Any, sev: Any, description: Any, uri: Any, package: Any, version: Any, fixed: Any,
             cvss: dict[str, Any]) -> ImageScanFinding:
    if not isinstance(name, str) or not name:
        raise ValueError("a vulnerability without an id")
    pairs = [("package_name", package), ("package_version", version), ("fixed_in_version", fixed),
             *sorted(cvss.items(), key=lambda kv: kv[0], reverse=True)]
    attributes = tuple(Attribute(key, str(value)[:_MAX_VALUE]) for key, value in pairs
                       if value is not None and str(value) != "")[:_MAX_ATTRIBUTES]
    return ImageScanFinding(name, severity(sev), str(description) if description else None,
                            str(uri) if uri else None, attributes)
