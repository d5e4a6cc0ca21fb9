package nvmlreceiver

// metricKind is how a metric is exported.
type metricKind int

const (
	kindGauge  metricKind = iota
	kindSum               // monotonic cumulative sum
	kindUpDown            // non-monotonic cumulative sum (semconv UpDownCounter)
)

func (k metricKind) String() string {
	switch k {
	case kindSum:
		return "sum, monotonic"
	case kindUpDown:
		return "updowncounter"
	default:
		return "gauge"
	}
}

// metricDef is one row of the metric table: it drives the scraper (what is
// enabled, how points are typed), config validation (known names) and the
// README's metric table (a test keeps them identical).
type metricDef struct {
	name        string
	unit        string
	kind        metricKind
	isInt       bool
	attrs       []string // attributes beyond hw.id and hw.name
	enabled     bool     // default
	description string
	source      string   // NVML source, for the README
	symbols     []string // NVML functions the metric needs; one missing disables it
}

// Metric indices: the scraper refers to metrics by these, the table below
// holds everything else about them.
const (
	mUtilization = iota
	mMemBandwidthUtil
	mMemUsage
	mMemLimit
	mMemUtilization
	mMemReserved
	mPower
	mPowerLimit
	mEnergy
	mTemperature
	mTempLimit
	mClock
	mClockMax
	mThrottleActive
	mThrottleDuration
	mPCIeThroughput
	mPCIeReplays
	mPCIeErrors
	mPCIeLinkGen
	mPCIeLinkWidth
	mNVLinkIO
	mNVLinkErrors
	mNVLinkBER
	mNVLinkActive
	mC2CErrors
	mFabricState
	mErrors
	mECC
	mRemappedRows
	mRemapState
	mRetiredPages
	mStatus
	mPerfState
	mVGPULicense
	mFanSpeed
	mSMUtil
	mSMOccupancy
	mDRAMUtil
	mPipeUtil
	mEngineUtil
	mProcMemory
	mProcUtil
	mInfo
	numMetrics
)

var metricDefs = [numMetrics]metricDef{
	mUtilization: {
		name: "hw.gpu.utilization", unit: "1", kind: kindGauge, attrs: []string{"hw.gpu.task"}, enabled: true,
		description: "Fraction of time the GPU (general), its encoder or its decoder was busy, averaged over the scrape interval.",
		source:      "GetSamples(GPU/ENC/DEC_UTILIZATION_SAMPLES, last seen) averaged; fallback GetUtilizationRates, Get{Encoder,Decoder}Utilization",
		symbols:     []string{"nvmlDeviceGetSamples", "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetEncoderUtilization", "nvmlDeviceGetDecoderUtilization"},
	},
	mMemBandwidthUtil: {
		name: "nvidia.gpu.memory.bandwidth.utilization", unit: "1", kind: kindGauge, enabled: true,
		description: "Fraction of time device memory was being read or written, averaged over the scrape interval.",
		source:      "GetSamples(MEMORY_UTILIZATION_SAMPLES) averaged; fallback GetUtilizationRates().Memory",
		symbols:     []string{"nvmlDeviceGetSamples", "nvmlDeviceGetUtilizationRates"},
	},
	mMemUsage: {
		name: "hw.gpu.memory.usage", unit: "By", kind: kindUpDown, isInt: true, enabled: true,
		description: "Device memory in use.", source: "GetMemoryInfo_v2 used (fallback GetMemoryInfo)",
		symbols: []string{"nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetMemoryInfo"},
	},
	mMemLimit: {
		name: "hw.gpu.memory.limit", unit: "By", kind: kindUpDown, isInt: true, enabled: true,
		description: "Device memory size.", source: "GetMemoryInfo_v2 total (fallback GetMemoryInfo)",
		symbols: []string{"nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetMemoryInfo"},
	},
	mMemUtilization: {
		name: "hw.gpu.memory.utilization", unit: "1", kind: kindGauge, enabled: true,
		description: "Fraction of device memory in use.", source: "used / total",
		symbols: []string{"nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetMemoryInfo"},
	},
	mMemReserved: {
		name: "nvidia.gpu.memory.reserved", unit: "By", kind: kindUpDown, isInt: true, enabled: true,
		description: "Device memory reserved by the driver and firmware.", source: "GetMemoryInfo_v2 reserved",
		symbols: []string{"nvmlDeviceGetMemoryInfo_v2"},
	},
	mPower: {
		name: "hw.power", unit: "W", kind: kindGauge, attrs: []string{"hw.type"}, enabled: true,
		description: "Power drawn by the GPU board.", source: "field POWER_INSTANT (186, mW) where answered, else POWER_AVERAGE (185, mW, Ampere+ but GA100); fallback GetPowerUsage",
		symbols: []string{"nvmlDeviceGetFieldValues", "nvmlDeviceGetPowerUsage"},
	},
	mPowerLimit: {
		name: "nvidia.gpu.power.limit", unit: "W", kind: kindGauge, enabled: true,
		description: "Power limit the driver enforces.", source: "field POWER_CURRENT_LIMIT (mW); fallback GetEnforcedPowerLimit",
		symbols: []string{"nvmlDeviceGetFieldValues", "nvmlDeviceGetEnforcedPowerLimit"},
	},
	mEnergy: {
		name: "hw.energy", unit: "J", kind: kindSum, attrs: []string{"hw.type"}, enabled: true,
		description: "Energy consumed by the GPU board; a new start time when the counter goes down (driver reload).",
		source:      "field TOTAL_ENERGY_CONSUMPTION (mJ); fallback GetTotalEnergyConsumption",
		symbols:     []string{"nvmlDeviceGetFieldValues", "nvmlDeviceGetTotalEnergyConsumption"},
	},
	mTemperature: {
		name: "hw.temperature", unit: "Cel", kind: kindGauge, attrs: []string{"hw.sensor_location"}, enabled: true,
		description: "GPU die (gpu) and HBM (memory) temperature.", source: "GetTemperatureV (GetTemperature on drivers without it); field MEMORY_TEMP",
		symbols: []string{"nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature", "nvmlDeviceGetFieldValues"},
	},
	mTempLimit: {
		name: "hw.temperature.limit", unit: "Cel", kind: kindGauge, isInt: true, attrs: []string{"hw.sensor_location", "hw.limit_type"}, enabled: true,
		description: "The GPU's temperature thresholds: shutdown (high.critical), slowdown (throttled) and the maximum operating temperature (max).",
		source:      "GetTemperatureThreshold SHUTDOWN/SLOWDOWN/GPU_MAX; read every rediscover_interval",
		symbols:     []string{"nvmlDeviceGetTemperatureThreshold"},
	},
	mClock: {
		name: "nvidia.gpu.clock.frequency", unit: "Hz", kind: kindGauge, attrs: []string{"nvidia.gpu.clock"}, enabled: true,
		description: "Current graphics, SM, memory and video clocks.", source: "GetClockInfo (MHz)",
		symbols: []string{"nvmlDeviceGetClockInfo"},
	},
	mClockMax: {
		name: "nvidia.gpu.clock.frequency.max", unit: "Hz", kind: kindGauge, attrs: []string{"nvidia.gpu.clock"}, enabled: true,
		description: "Maximum graphics, SM, memory and video clocks.", source: "GetMaxClockInfo (MHz); read every rediscover_interval",
		symbols: []string{"nvmlDeviceGetMaxClockInfo"},
	},
	mThrottleActive: {
		name: "nvidia.gpu.clock.throttle.active", unit: "1", kind: kindGauge, isInt: true, attrs: []string{"nvidia.gpu.throttle.reason"}, enabled: true,
		description: "1 while a clock event reason holds the clocks down, else 0.", source: "GetCurrentClocksEventReasons bits (GetCurrentClocksThrottleReasons before R535)",
		symbols: []string{"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"},
	},
	mThrottleDuration: {
		name: "nvidia.gpu.clock.throttle.duration", unit: "s", kind: kindSum, attrs: []string{"nvidia.gpu.violation.policy"}, enabled: true,
		description: "Time the clocks were held below their target, by cause (README \"Throttle durations\"): power, thermal, sync_boost, board_limit, low_utilization, reliability, base_clocks, hw_thermal_slowdown, hw_power_brake_slowdown.",
		source:      "fields CLOCKS_EVENT_REASON_SW_POWER_CAP/SW_THERM_SLOWDOWN/SYNC_BOOST (74/269/76), PERF_POLICY_BOARD_LIMIT/LOW_UTILIZATION/RELIABILITY/TOTAL_BASE_CLOCKS (77-79/81), CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN/HW_POWER_BRAKE_SLOWDOWN (270/271), ns, one request; fallback GetViolationStatus (not 270/271)",
		symbols:     []string{"nvmlDeviceGetFieldValues", "nvmlDeviceGetViolationStatus"},
	},
	mPCIeThroughput: {
		name: "nvidia.gpu.pcie.throughput", unit: "By/s", kind: kindGauge, attrs: []string{"network.io.direction"}, enabled: true,
		description: "PCIe traffic, transmit and receive.", source: "rate of fields PCIE_COUNT_TX/RX_BYTES (197/198) between scrapes (from the second scrape; a 32-bit counter's wrap counted as one wrap); fallback GetPcieThroughput (KB/s, samples ~20 ms)",
		symbols: []string{"nvmlDeviceGetFieldValues", "nvmlDeviceGetPcieThroughput"},
	},
	mPCIeReplays: {
		name: "nvidia.gpu.pcie.replays", unit: "{replay}", kind: kindSum, isInt: true, enabled: true,
		description: "PCIe replays (link-level retransmissions).", source: "field PCIE_REPLAY_COUNTER; fallback GetPcieReplayCounter",
		symbols: []string{"nvmlDeviceGetFieldValues", "nvmlDeviceGetPcieReplayCounter"},
	},
	mPCIeErrors: {
		name: "nvidia.gpu.pcie.errors", unit: "{error}", kind: kindSum, isInt: true, attrs: []string{"error.type"}, enabled: true,
		description: "PCIe link errors the GPU counted, by type (README \"Interconnect health\"): replay_rollover, recovery, correctable, nak_received, nak_sent, receiver_error, bad_tlp, bad_dllp, non_fatal, fatal, unsupported_request, lcrc; each where the driver answers it.",
		source:      "fields PCIE_REPLAY_ROLLOVER_COUNTER (95), PCIE_L0_TO_RECOVERY_COUNTER (169), PCIE_COUNT_CORRECTABLE_ERRORS/NAKS_RECEIVED/RECEIVER_ERROR/BAD_TLP/NAKS_SENT/BAD_DLLP/NON_FATAL_ERROR/FATAL_ERROR/UNSUPPORTED_REQ/LCRC_ERROR (173-182), in the field-values request",
		symbols:     []string{"nvmlDeviceGetFieldValues"},
	},
	mPCIeLinkGen: {
		name: "nvidia.gpu.pcie.link.generation", unit: "1", kind: kindGauge, isInt: true, attrs: []string{"nvidia.gpu.pcie.link"}, enabled: true,
		description: "PCIe link generation now (current) and at best (max); a link trained below its maximum is common in VMs.",
		source:      "GetCurrPcieLinkGeneration, GetMaxPcieLinkGeneration (max read every rediscover_interval)",
		symbols:     []string{"nvmlDeviceGetCurrPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkGeneration"},
	},
	mPCIeLinkWidth: {
		name: "nvidia.gpu.pcie.link.width", unit: "{lane}", kind: kindGauge, isInt: true, attrs: []string{"nvidia.gpu.pcie.link"}, enabled: true,
		description: "PCIe link width now (current) and at best (max).",
		source:      "GetCurrPcieLinkWidth, GetMaxPcieLinkWidth (max read every rediscover_interval)",
		symbols:     []string{"nvmlDeviceGetCurrPcieLinkWidth", "nvmlDeviceGetMaxPcieLinkWidth"},
	},
	mNVLinkIO: {
		name: "hw.gpu.io", unit: "By", kind: kindSum, isInt: true, attrs: []string{"network.io.direction"}, enabled: true,
		description: "NVLink data traffic over every link; a link that goes down or comes back does not move it (README \"NVLink traffic\").",
		source:      "fields NVLINK_THROUGHPUT_DATA_TX/RX (138/139, KiB) at scope UINT_MAX (all links); drivers without it: per active link, each link's increase between scrapes summed by the receiver",
		symbols:     []string{"nvmlDeviceGetNvLinkState", "nvmlDeviceGetFieldValues"},
	},
	mNVLinkErrors: {
		name: "nvidia.gpu.nvlink.errors", unit: "{error}", kind: kindSum, isInt: true, attrs: []string{"error.type"}, enabled: true,
		description: "NVLink errors by type: crc_flit, crc_data, replay, recovery (summed over the active links), ecc_data; on NVLink5 also malformed_packet, buffer_overrun, receive, receive_remote, receive_general, local_link_integrity, transmit_discard, link_recovery_failed, effective, symbol (summed over every link the GPU has); each where the driver answers it.",
		source:      "fields NVLINK_CRC_FLIT/CRC_DATA/REPLAY/RECOVERY_ERROR_COUNT_TOTAL (fallback GetNvLinkErrorCounter summed over active links), NVLINK_ECC_DATA_ERROR_COUNT_TOTAL (160), NVLINK_COUNT_MALFORMED_PACKET_ERRORS..XMIT_DISCARDS (206-212), LINK_RECOVERY_FAILED_EVENTS (214), EFFECTIVE_ERRORS (219), SYMBOL_ERRORS (221) per link",
		symbols:     []string{"nvmlDeviceGetNvLinkState", "nvmlDeviceGetFieldValues", "nvmlDeviceGetNvLinkErrorCounter"},
	},
	mNVLinkBER: {
		name: "nvidia.gpu.nvlink.ber", unit: "1", kind: kindGauge, attrs: []string{"nvidia.gpu.nvlink.link", "error.type"}, enabled: true,
		description: "Per NVLink (NVLink5, Blackwell and later, where the driver answers): bit error rate of effective errors (after FEC) and of symbol errors (before it).",
		source:      "fields NVLINK_COUNT_EFFECTIVE_BER (220), NVLINK_COUNT_SYMBOL_BER (222) per link, mantissa * 10^-exponent, in the field-values request",
		symbols:     []string{"nvmlDeviceGetNvLinkState", "nvmlDeviceGetFieldValues"},
	},
	mC2CErrors: {
		name: "nvidia.gpu.c2c.errors", unit: "{error}", kind: kindSum, isInt: true, attrs: []string{"error.type"}, enabled: true,
		description: "Errors on the chip-to-chip link to the CPU (Grace Hopper, Grace Blackwell), by type: crc, replay, replay_b2b (back-to-back replays).",
		source:      "fields C2C_LINK_ERROR_INTR/REPLAY/REPLAY_B2B (231-233), in the field-values request",
		symbols:     []string{"nvmlDeviceGetFieldValues"},
	},
	mFabricState: {
		name: "nvidia.gpu.fabric.state", unit: "1", kind: kindGauge, isInt: true, attrs: []string{"nvidia.gpu.fabric.state", "error.type"}, enabled: true,
		description: "On NVSwitch systems, the GPU's registration with the fabric: 1 for the current state (not_started, in_progress, completed), 0 for the others; a completed registration whose probe failed carries the probe's status as error.type (README \"Interconnect health\"). Not reported where the driver has no fabric.",
		source:      "GetGpuFabricInfoV (v3, v2 on drivers without it) state and status; read every rediscover_interval",
		symbols:     []string{"nvmlDeviceGetGpuFabricInfoV"},
	},
	mNVLinkActive: {
		name: "nvidia.gpu.nvlink.link.active", unit: "1", kind: kindGauge, isInt: true, attrs: []string{"nvidia.gpu.nvlink.link"}, enabled: true,
		description: "Per NVLink the GPU has: 1 while it is active, 0 while it is down or untrained.",
		source:      "fields NVLINK_LINK_COUNT, NVLINK_GET_STATE per link (fallback GetNvLinkState per link); read every rediscover_interval",
		symbols:     []string{"nvmlDeviceGetFieldValues", "nvmlDeviceGetNvLinkState"},
	},
	mErrors: {
		name: "hw.errors", unit: "{error}", kind: kindSum, isInt: true, attrs: []string{"hw.type", "error.type", "nvidia.xid.code"}, enabled: true,
		description: "Corrected and uncorrected ECC errors (volatile) and XID errors by code (nvidia.xid.code on xid only).",
		source:      "fields ECC_SBE/DBE_VOL_TOTAL; fallback GetTotalEccErrors (volatile); XID: event set",
		symbols:     []string{"nvmlDeviceGetFieldValues", "nvmlDeviceGetTotalEccErrors"},
	},
	mECC: {
		name: "nvidia.gpu.ecc.errors", unit: "{error}", kind: kindSum, isInt: true,
		attrs: []string{"error.type", "nvidia.gpu.ecc.location", "nvidia.gpu.ecc.counter"}, enabled: false,
		description: "ECC errors per memory location (device_memory, l1_cache, l2_cache, register_file, texture_memory; total), since the driver loaded (volatile) and over the board's life (aggregate).",
		source:      "fields ECC_SBE/DBE_VOL_DEV/L1/L2/REG/TEX, ECC_SBE/DBE_AGG_TOTAL/DEV (where the board has the location)",
		symbols:     []string{"nvmlDeviceGetFieldValues"},
	},
	mRemappedRows: {
		name: "nvidia.gpu.memory.remapped_rows", unit: "{row}", kind: kindUpDown, isInt: true, attrs: []string{"nvidia.gpu.remap.cause"}, enabled: true,
		description: "Memory rows remapped, by the errors that caused it (correctable, uncorrectable).",
		source:      "GetRemappedRows (Ampere+)",
		symbols:     []string{"nvmlDeviceGetRemappedRows"},
	},
	mRemapState: {
		name: "nvidia.gpu.memory.remap.state", unit: "1", kind: kindGauge, isInt: true, attrs: []string{"nvidia.gpu.remap.state"}, enabled: true,
		description: "1 while a row remap is pending (applied at the next GPU reset) or has failed (the GPU needs service), else 0, one point each.",
		source:      "GetRemappedRows (Ampere+)",
		symbols:     []string{"nvmlDeviceGetRemappedRows"},
	},
	mRetiredPages: {
		name: "nvidia.gpu.memory.retired_pages", unit: "{page}", kind: kindUpDown, isInt: true, attrs: []string{"nvidia.gpu.retire.cause"}, enabled: true,
		description: "Retired memory pages by cause (single/double bit ECC).", source: "GetRetiredPages (pre-Ampere)",
		symbols: []string{"nvmlDeviceGetRetiredPages"},
	},
	mStatus: {
		name: "hw.status", unit: "1", kind: kindUpDown, isInt: true, attrs: []string{"hw.type", "hw.state", "nvidia.gpu.health.reason"}, enabled: true,
		description: "1 for the GPU's current state (ok, degraded, failed), 0 for the others; the current state's point says why (nvidia.gpu.health.reason) unless it is ok.",
		source:      "derived (README \"GPU health\"): lost, reset required, XID 79, answering nothing (ERROR_UNKNOWN/TIMEOUT or no return) 2 scrapes in a row, recovery action reset/reboot -> failed; XID 46/48/62/63/64/74/92/94/95/119/120/154, uncorrected ECC, remap pending/failed, recovery action drain -> degraded; held until a reset clears it; field GET_GPU_RECOVERY_ACTION (230)",
	},

	mPerfState: {
		name: "nvidia.gpu.performance_state", unit: "{state}", kind: kindGauge, isInt: true, enabled: true,
		description: "Performance state (P0 = 0, maximum performance, to P15).", source: "GetPerformanceState",
		symbols: []string{"nvmlDeviceGetPerformanceState"},
	},
	mVGPULicense: {
		name: "nvidia.gpu.vgpu.license.state", unit: "1", kind: kindGauge, isInt: true, attrs: []string{"nvidia.gpu.vgpu.license.feature"}, enabled: true,
		description: "In a vGPU guest, per licensable feature (vgpu, nvidia_rtx, gaming, compute, vgamedev): 1 while it is licensed, 0 while not (an unlicensed vGPU runs degraded). Not reported outside vGPU guests.",
		source:      "GetGridLicensableFeatures; read every rediscover_interval",
		symbols:     []string{"nvmlDeviceGetGridLicensableFeatures"},
	},
	mFanSpeed: {
		name: "hw.fan.speed_ratio", unit: "1", kind: kindGauge, enabled: true,
		description: "Per fan of the board (its own hw.id <GPU UUID>/fan<k>, hw.parent the GPU): speed as a fraction of its maximum.",
		source:      "GetNumFans, GetFanSpeed_v2 per fan (%); fallback GetFanSpeed (one fan)",
		symbols:     []string{"nvmlDeviceGetNumFans", "nvmlDeviceGetFanSpeed_v2", "nvmlDeviceGetFanSpeed"},
	},
	mSMUtil: {
		name: "nvidia.gpu.sm.utilization", unit: "1", kind: kindGauge, enabled: true,
		description: "Fraction of SMs busy, over the interval (GPM, Hopper+); per MIG instance too.", source: "GPM SM_UTIL (GpmMigSampleGet for MIG)",
		symbols: []string{"nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleGet", "nvmlGpmMetricsGet"},
	},
	mSMOccupancy: {
		name: "nvidia.gpu.sm.occupancy", unit: "1", kind: kindGauge, enabled: true,
		description: "Resident warps as a fraction of the maximum, over the interval (GPM, Hopper+).", source: "GPM SM_OCCUPANCY",
		symbols: []string{"nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleGet", "nvmlGpmMetricsGet"},
	},
	mDRAMUtil: {
		name: "nvidia.gpu.dram.utilization", unit: "1", kind: kindGauge, enabled: true,
		description: "DRAM bandwidth used as a fraction of peak, over the interval (GPM, Hopper+).", source: "GPM DRAM_BW_UTIL",
		symbols: []string{"nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleGet", "nvmlGpmMetricsGet"},
	},
	mPipeUtil: {
		name: "nvidia.gpu.pipe.utilization", unit: "1", kind: kindGauge, attrs: []string{"nvidia.gpu.pipe"}, enabled: true,
		description: "Pipe activity over the interval (GPM, Hopper+; per MIG GPU instance too): tensor (any), its splits tensor_dfma, tensor_hmma, tensor_dmma, tensor_imma, and the non-tensor fp64, fp32, fp16, int.",
		source:      "GPM ANY_TENSOR/DFMA_TENSOR/HMMA_TENSOR/DMMA_TENSOR/IMMA_TENSOR/FP64/FP32/FP16/INTEGER_UTIL (5-9, 11-13, 4), in the one GPM request",
		symbols:     []string{"nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleGet", "nvmlGpmMetricsGet"},
	},
	mEngineUtil: {
		name: "nvidia.gpu.engine.utilization", unit: "1", kind: kindGauge, attrs: []string{"nvidia.gpu.engine"}, enabled: true,
		description: "Engines busy, over the interval (GPM, Hopper+; per MIG GPU instance too): graphics (any compute or graphics context active, DCGM's GR_ENGINE_ACTIVE, the usual MIG utilization) and the video engines, each kind averaged over its instances: nvdec (decoders), nvjpg (JPEG), nvofa (optical flow).",
		source:      "GPM GRAPHICS_UTIL (1), NVDEC_0..7_UTIL, NVJPG_0..7_UTIL, NVOFA_0_UTIL, in the one GPM request",
		symbols:     []string{"nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleGet", "nvmlGpmMetricsGet"},
	},
	mProcMemory: {
		name: "nvidia.gpu.process.memory.usage", unit: "By", kind: kindUpDown, isInt: true, attrs: []string{"process.pid", "process.executable.name", "container.id", "k8s.pod.uid", "slurm.job.id"},
		description: "Device memory used by each process.", source: "Get{Compute,Graphics,MPSCompute}RunningProcesses",
		symbols: []string{"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses", "nvmlDeviceGetMPSComputeRunningProcesses"},
	},
	mProcUtil: {
		name: "nvidia.gpu.process.utilization", unit: "1", kind: kindGauge, attrs: []string{"process.pid", "process.executable.name", "container.id", "k8s.pod.uid", "slurm.job.id", "hw.gpu.task"},
		description: "Each process's SM (general), encoder and decoder utilization, averaged over the interval.",
		source:      "GetProcessUtilization(last seen), once per device per scrape",
		symbols:     []string{"nvmlDeviceGetProcessUtilization"},
	},
	mInfo: {
		name: "nvidia.gpu.info", unit: "1", kind: kindGauge, isInt: true,
		attrs: []string{
			"hw.model", "hw.vendor", "hw.serial_number", "hw.driver_version", "hw.firmware_version",
			"nvidia.gpu.pci_bus_id", "nvidia.gpu.virtualization_mode", "nvidia.cuda.driver_version",
		},
		enabled:     true,
		description: "Always 1; carries the GPU's identity once per scrape.",
		source:      "GetName, GetSerial, GetVbiosVersion, GetPciInfo, GetVirtualizationMode, SystemGetDriverVersion, SystemGetCudaDriverVersion",
		symbols:     []string{"nvmlDeviceGetName"},
	},
}

// metricIndex finds a metric by name.
func metricIndex(name string) (int, bool) {
	for i := range metricDefs {
		if metricDefs[i].name == name {
			return i, true
		}
	}
	return 0, false
}
