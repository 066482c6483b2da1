from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResultStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_STATUS_UNSPECIFIED: _ClassVar[ResultStatus]
    RESULT_STATUS_OK: _ClassVar[ResultStatus]
    RESULT_STATUS_FAILED: _ClassVar[ResultStatus]
    RESULT_STATUS_RELEASED: _ClassVar[ResultStatus]
    RESULT_STATUS_DISTURBED: _ClassVar[ResultStatus]
RESULT_STATUS_UNSPECIFIED: ResultStatus
RESULT_STATUS_OK: ResultStatus
RESULT_STATUS_FAILED: ResultStatus
RESULT_STATUS_RELEASED: ResultStatus
RESULT_STATUS_DISTURBED: ResultStatus

class DeviceInfo(_message.Message):
    __slots__ = ("os", "os_release", "machine", "cpu_model", "physical_cores", "logical_cores", "cpu_min_mhz", "cpu_max_mhz", "cpu_governor", "memory_bytes", "temperature_sources", "onnxruntime_version", "onnxruntime_providers", "torch_version", "cuda_device", "python_version", "hostname", "android_release", "gpu_name", "gpu_driver", "gpu_memory_bytes")
    OS_FIELD_NUMBER: _ClassVar[int]
    OS_RELEASE_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_CORES_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_CORES_FIELD_NUMBER: _ClassVar[int]
    CPU_MIN_MHZ_FIELD_NUMBER: _ClassVar[int]
    CPU_MAX_MHZ_FIELD_NUMBER: _ClassVar[int]
    CPU_GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_SOURCES_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    TORCH_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_DEVICE_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ANDROID_RELEASE_FIELD_NUMBER: _ClassVar[int]
    GPU_NAME_FIELD_NUMBER: _ClassVar[int]
    GPU_DRIVER_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    os: str
    os_release: str
    machine: str
    cpu_model: str
    physical_cores: int
    logical_cores: int
    cpu_min_mhz: float
    cpu_max_mhz: float
    cpu_governor: str
    memory_bytes: int
    temperature_sources: _containers.RepeatedScalarFieldContainer[str]
    onnxruntime_version: str
    onnxruntime_providers: _containers.RepeatedScalarFieldContainer[str]
    torch_version: str
    cuda_device: str
    python_version: str
    hostname: str
    android_release: str
    gpu_name: str
    gpu_driver: str
    gpu_memory_bytes: int
    def __init__(self, os: _Optional[str] = ..., os_release: _Optional[str] = ..., machine: _Optional[str] = ..., cpu_model: _Optional[str] = ..., physical_cores: _Optional[int] = ..., logical_cores: _Optional[int] = ..., cpu_min_mhz: _Optional[float] = ..., cpu_max_mhz: _Optional[float] = ..., cpu_governor: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., temperature_sources: _Optional[_Iterable[str]] = ..., onnxruntime_version: _Optional[str] = ..., onnxruntime_providers: _Optional[_Iterable[str]] = ..., torch_version: _Optional[str] = ..., cuda_device: _Optional[str] = ..., python_version: _Optional[str] = ..., hostname: _Optional[str] = ..., android_release: _Optional[str] = ..., gpu_name: _Optional[str] = ..., gpu_driver: _Optional[str] = ..., gpu_memory_bytes: _Optional[int] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("unix_time_ns", "cpu_freq_mhz", "temperature_c", "load_1m", "cpu_percent", "cpu_steal_percent", "available_memory_bytes", "gpu_index", "gpu_sm_clock_mhz", "gpu_memory_clock_mhz", "gpu_temperature_c", "gpu_memory_used_bytes")
    UNIX_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CPU_FREQ_MHZ_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    LOAD_1M_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CPU_STEAL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_SM_CLOCK_MHZ_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_CLOCK_MHZ_FIELD_NUMBER: _ClassVar[int]
    GPU_TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    unix_time_ns: int
    cpu_freq_mhz: float
    temperature_c: float
    load_1m: float
    cpu_percent: float
    cpu_steal_percent: float
    available_memory_bytes: int
    gpu_index: int
    gpu_sm_clock_mhz: float
    gpu_memory_clock_mhz: float
    gpu_temperature_c: float
    gpu_memory_used_bytes: int
    def __init__(self, unix_time_ns: _Optional[int] = ..., cpu_freq_mhz: _Optional[float] = ..., temperature_c: _Optional[float] = ..., load_1m: _Optional[float] = ..., cpu_percent: _Optional[float] = ..., cpu_steal_percent: _Optional[float] = ..., available_memory_bytes: _Optional[int] = ..., gpu_index: _Optional[int] = ..., gpu_sm_clock_mhz: _Optional[float] = ..., gpu_memory_clock_mhz: _Optional[float] = ..., gpu_temperature_c: _Optional[float] = ..., gpu_memory_used_bytes: _Optional[int] = ...) -> None: ...

class TensorShape(_message.Message):
    __slots__ = ("name", "dims")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dims: _Optional[_Iterable[int]] = ...) -> None: ...

class BenchSpec(_message.Message):
    __slots__ = ("model_digest", "model_size", "subnet_config_json", "lut_key", "reference", "inputs", "profile", "model_precision", "runtime", "execution_provider", "threads", "warmup_runs", "warmup_min_s", "min_runs", "min_time_s", "max_time_s", "target_precision")
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SUBNET_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    LUT_KEY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_PRECISION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RUNS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_MIN_S_FIELD_NUMBER: _ClassVar[int]
    MIN_RUNS_FIELD_NUMBER: _ClassVar[int]
    MIN_TIME_S_FIELD_NUMBER: _ClassVar[int]
    MAX_TIME_S_FIELD_NUMBER: _ClassVar[int]
    TARGET_PRECISION_FIELD_NUMBER: _ClassVar[int]
    model_digest: str
    model_size: int
    subnet_config_json: str
    lut_key: str
    reference: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorShape]
    profile: bool
    model_precision: str
    runtime: str
    execution_provider: str
    threads: int
    warmup_runs: int
    warmup_min_s: float
    min_runs: int
    min_time_s: float
    max_time_s: float
    target_precision: float
    def __init__(self, model_digest: _Optional[str] = ..., model_size: _Optional[int] = ..., subnet_config_json: _Optional[str] = ..., lut_key: _Optional[str] = ..., reference: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorShape, _Mapping]]] = ..., profile: _Optional[bool] = ..., model_precision: _Optional[str] = ..., runtime: _Optional[str] = ..., execution_provider: _Optional[str] = ..., threads: _Optional[int] = ..., warmup_runs: _Optional[int] = ..., warmup_min_s: _Optional[float] = ..., min_runs: _Optional[int] = ..., min_time_s: _Optional[float] = ..., max_time_s: _Optional[float] = ..., target_precision: _Optional[float] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "lease_id", "lease_expires_unix_ms", "attempt", "spec")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_id: str
    lease_expires_unix_ms: int
    attempt: int
    spec: BenchSpec
    def __init__(self, job_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., lease_expires_unix_ms: _Optional[int] = ..., attempt: _Optional[int] = ..., spec: _Optional[_Union[BenchSpec, _Mapping]] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("cpu_wait", "cpu_wait_peak", "others_cpu", "steal", "load_1m", "freq_min_mhz", "freq_max_mhz", "temperature_max_c", "block_spread", "trend", "reasons")
    CPU_WAIT_FIELD_NUMBER: _ClassVar[int]
    CPU_WAIT_PEAK_FIELD_NUMBER: _ClassVar[int]
    OTHERS_CPU_FIELD_NUMBER: _ClassVar[int]
    STEAL_FIELD_NUMBER: _ClassVar[int]
    LOAD_1M_FIELD_NUMBER: _ClassVar[int]
    FREQ_MIN_MHZ_FIELD_NUMBER: _ClassVar[int]
    FREQ_MAX_MHZ_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_MAX_C_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SPREAD_FIELD_NUMBER: _ClassVar[int]
    TREND_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    cpu_wait: float
    cpu_wait_peak: float
    others_cpu: float
    steal: float
    load_1m: float
    freq_min_mhz: float
    freq_max_mhz: float
    temperature_max_c: float
    block_spread: float
    trend: float
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cpu_wait: _Optional[float] = ..., cpu_wait_peak: _Optional[float] = ..., others_cpu: _Optional[float] = ..., steal: _Optional[float] = ..., load_1m: _Optional[float] = ..., freq_min_mhz: _Optional[float] = ..., freq_max_mhz: _Optional[float] = ..., temperature_max_c: _Optional[float] = ..., block_spread: _Optional[float] = ..., trend: _Optional[float] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class DriftCheck(_message.Message):
    __slots__ = ("baseline_median_ms", "median_ms", "drift", "measured_unix_ns")
    BASELINE_MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    MEASURED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    baseline_median_ms: float
    median_ms: float
    drift: float
    measured_unix_ns: int
    def __init__(self, baseline_median_ms: _Optional[float] = ..., median_ms: _Optional[float] = ..., drift: _Optional[float] = ..., measured_unix_ns: _Optional[int] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("status", "message", "samples_ns", "session_create_ns", "first_run_ns", "warmup_runs", "warmup_ns", "stop_reason", "peak_rss_bytes", "before", "after", "runtime_versions", "drift", "lease_to_report_ns", "evidence", "conditions", "profile")
    class RuntimeVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_NS_FIELD_NUMBER: _ClassVar[int]
    SESSION_CREATE_NS_FIELD_NUMBER: _ClassVar[int]
    FIRST_RUN_NS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RUNS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_NS_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    LEASE_TO_REPORT_NS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    status: ResultStatus
    message: str
    samples_ns: _containers.RepeatedScalarFieldContainer[int]
    session_create_ns: int
    first_run_ns: int
    warmup_runs: int
    warmup_ns: int
    stop_reason: str
    peak_rss_bytes: int
    before: Telemetry
    after: Telemetry
    runtime_versions: _containers.ScalarMap[str, str]
    drift: DriftCheck
    lease_to_report_ns: int
    evidence: Evidence
    conditions: Conditions
    profile: Profile
    def __init__(self, status: _Optional[_Union[ResultStatus, str]] = ..., message: _Optional[str] = ..., samples_ns: _Optional[_Iterable[int]] = ..., session_create_ns: _Optional[int] = ..., first_run_ns: _Optional[int] = ..., warmup_runs: _Optional[int] = ..., warmup_ns: _Optional[int] = ..., stop_reason: _Optional[str] = ..., peak_rss_bytes: _Optional[int] = ..., before: _Optional[_Union[Telemetry, _Mapping]] = ..., after: _Optional[_Union[Telemetry, _Mapping]] = ..., runtime_versions: _Optional[_Mapping[str, str]] = ..., drift: _Optional[_Union[DriftCheck, _Mapping]] = ..., lease_to_report_ns: _Optional[int] = ..., evidence: _Optional[_Union[Evidence, _Mapping]] = ..., conditions: _Optional[_Union[Conditions, _Mapping]] = ..., profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class NodeTime(_message.Message):
    __slots__ = ("node", "op_type", "scope", "mean_us")
    NODE_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    MEAN_US_FIELD_NUMBER: _ClassVar[int]
    node: str
    op_type: str
    scope: str
    mean_us: float
    def __init__(self, node: _Optional[str] = ..., op_type: _Optional[str] = ..., scope: _Optional[str] = ..., mean_us: _Optional[float] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("runs", "nodes", "error")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    runs: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeTime]
    error: str
    def __init__(self, runs: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeTime, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class Conditions(_message.Message):
    __slots__ = ("pinned_cores", "cooldown_s")
    PINNED_CORES_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_S_FIELD_NUMBER: _ClassVar[int]
    pinned_cores: _containers.RepeatedScalarFieldContainer[int]
    cooldown_s: float
    def __init__(self, pinned_cores: _Optional[_Iterable[int]] = ..., cooldown_s: _Optional[float] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("agent_id", "labels", "device", "agent_version", "threads")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    device: DeviceInfo
    agent_version: str
    threads: int
    def __init__(self, agent_id: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., device: _Optional[_Union[DeviceInfo, _Mapping]] = ..., agent_version: _Optional[str] = ..., threads: _Optional[int] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("agent_id", "heartbeat_interval_s", "max_chunk_bytes")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    heartbeat_interval_s: float
    max_chunk_bytes: int
    def __init__(self, agent_id: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., max_chunk_bytes: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("agent_id", "lease_ids", "telemetry")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    lease_ids: _containers.RepeatedScalarFieldContainer[str]
    telemetry: Telemetry
    def __init__(self, agent_id: _Optional[str] = ..., lease_ids: _Optional[_Iterable[str]] = ..., telemetry: _Optional[_Union[Telemetry, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("lost_lease_ids", "heartbeat_interval_s")
    LOST_LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    lost_lease_ids: _containers.RepeatedScalarFieldContainer[str]
    heartbeat_interval_s: float
    def __init__(self, lost_lease_ids: _Optional[_Iterable[str]] = ..., heartbeat_interval_s: _Optional[float] = ...) -> None: ...

class LeaseJobsRequest(_message.Message):
    __slots__ = ("agent_id", "max_jobs", "wait_s")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    max_jobs: int
    wait_s: float
    def __init__(self, agent_id: _Optional[str] = ..., max_jobs: _Optional[int] = ..., wait_s: _Optional[float] = ...) -> None: ...

class LeaseJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class ReadBlobRequest(_message.Message):
    __slots__ = ("digest", "offset", "limit")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    digest: str
    offset: int
    limit: int
    def __init__(self, digest: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ReadBlobResponse(_message.Message):
    __slots__ = ("data", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., total_size: _Optional[int] = ...) -> None: ...

class ReportResultRequest(_message.Message):
    __slots__ = ("agent_id", "job_id", "lease_id", "result")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    job_id: str
    lease_id: str
    result: Result
    def __init__(self, agent_id: _Optional[str] = ..., job_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., result: _Optional[_Union[Result, _Mapping]] = ...) -> None: ...

class ReportResultResponse(_message.Message):
    __slots__ = ("accepted", "duplicate", "late")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    duplicate: bool
    late: bool
    def __init__(self, accepted: _Optional[bool] = ..., duplicate: _Optional[bool] = ..., late: _Optional[bool] = ...) -> None: ...
