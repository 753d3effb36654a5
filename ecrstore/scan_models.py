"""The image scanning area's values (:mod:`ecrstore.scanning`): frozen dataclasses whose
snake_case fields are named after ECR's members, like :mod:`ecrstore.models` (which holds
the rest; ImageDetail carries :class:`ImageScanStatus` and :class:`ImageScanFindingsSummary`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import ImageIdentifier

__all__ = [
    "ImageScanStatus",
    "Attribute",
    "ImageScanFinding",
    "ImageScanFindingsSummary",
    "ImageScanFindings",
    "StartImageScanResult",
    "DescribeImageScanFindingsResult",
    "ScanningRepositoryFilter",
    "RegistryScanningRule",
    "RegistryScanningConfiguration",
    "PutRegistryScanningConfigurationResult",
    "GetRegistryScanningConfigurationResult",
    "RepositoryScanningConfiguration",
    "RepositoryScanningConfigurationFailure",
    "BatchGetRepositoryScanningConfigurationResult",
    "ScanTarget",
    "ScanReport",
]


@dataclass(frozen=True, slots=True)
class ImageScanStatus:
    """A scan's state (``IN_PROGRESS``, ``COMPLETE``, ``FAILED``, ``UNSUPPORTED_IMAGE``…) and
    what it means in words."""

    status: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Attribute:
    """A finding's attribute (``package_name``, ``package_version``, ``CVSS3_SCORE``…)."""

    key: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class ImageScanFinding:
    """One vulnerability of one package: its id (``name``), text, link and severity
    (``INFORMATIONAL``, ``LOW``, ``MEDIUM``, ``HIGH``, ``CRITICAL`` or ``UNDEFINED``)."""

    name: str
    severity: str
    description: str | None = None
    uri: str | None = None
    attributes: tuple[Attribute, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageScanFindingsSummary:
    """DescribeImages' summary of an image's last completed scan (epoch seconds)."""

    image_scan_completed_at: float
    finding_severity_counts: dict[str, int]
    vulnerability_source_updated_at: float | None = None


@dataclass(frozen=True, slots=True)
class ImageScanFindings:
    """A completed scan's findings: one page of them, and the counts of all."""

    image_scan_completed_at: float
    finding_severity_counts: dict[str, int]
    findings: tuple[ImageScanFinding, ...]
    vulnerability_source_updated_at: float | None = None


@dataclass(frozen=True, slots=True)
class StartImageScanResult:
    registry_id: str
    repository_name: str
    image_id: ImageIdentifier
    image_scan_status: ImageScanStatus


@dataclass(frozen=True, slots=True)
class DescribeImageScanFindingsResult:
    registry_id: str
    repository_name: str
    image_id: ImageIdentifier
    image_scan_status: ImageScanStatus
    image_scan_findings: ImageScanFindings | None = None
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class ScanningRepositoryFilter:
    """A repository name pattern of a registry scanning rule (``*`` wildcards)."""

    filter: str
    filter_type: str = "WILDCARD"


@dataclass(frozen=True, slots=True)
class RegistryScanningRule:
    """Repositories matching any of ``repository_filters`` are scanned at ``scan_frequency``
    (``SCAN_ON_PUSH``, ``CONTINUOUS_SCAN`` or ``MANUAL``)."""

    scan_frequency: str
    repository_filters: tuple[ScanningRepositoryFilter, ...]


@dataclass(frozen=True, slots=True)
class RegistryScanningConfiguration:
    scan_type: str = "BASIC"
    rules: tuple[RegistryScanningRule, ...] = ()


@dataclass(frozen=True, slots=True)
class PutRegistryScanningConfigurationResult:
    registry_scanning_configuration: RegistryScanningConfiguration


@dataclass(frozen=True, slots=True)
class GetRegistryScanningConfigurationResult:
    registry_id: str
    scanning_configuration: RegistryScanningConfiguration


@dataclass(frozen=True, slots=True)
class RepositoryScanningConfiguration:
    """How one repository is scanned: its own scanOnPush or the registry rule that applies."""

    repository_arn: str
    repository_name: str
    scan_on_push: bool
    scan_frequency: str
    applied_scan_filters: tuple[ScanningRepositoryFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class RepositoryScanningConfigurationFailure:
    repository_name: str
    failure_code: str
    failure_reason: str


@dataclass(frozen=True, slots=True)
class BatchGetRepositoryScanningConfigurationResult:
    scanning_configurations: tuple[RepositoryScanningConfiguration, ...]
    failures: tuple[RepositoryScanningConfigurationFailure, ...]


@dataclass(frozen=True, slots=True)
class ScanTarget:
    """What a scanner is asked to scan (``Store.scanning.configure``'s runner gets one)."""

    registry_id: str
    repository_name: str
    image_digest: str
    image_manifest_media_type: str


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What a scanner found: every finding, and when its vulnerability data was last updated
    (epoch seconds; None when the scanner does not say)."""

    findings: tuple[ImageScanFinding, ...]
    vulnerability_source_updated_at: float | None = None
