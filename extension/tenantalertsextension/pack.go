package tenantalertsextension

import "time"

// The default pack's annotations name the VM and the GPU from the series'
// own labels: host.id is the provider's id of the VM (the gateway sets it
// from the VM's credential), host.name what the VM calls itself, hw.name
// and hw.id the GPU (the nvml receiver).
const (
	vmWhere  = `{{ index $labels "host.id" }} ({{ index $labels "host.name" }})`
	gpuWhere = `{{ index $labels "hw.name" }} ({{ index $labels "hw.id" }}) on VM ` + vmWhere
)

// xidNeedsAction are the XIDs of NVIDIA's catalogue whose resolution is an
// action on the GPU or the VM (reset, drain, reboot, replacement), as the
// nvml receiver's health verdicts read them; application XIDs (13, 31, 43,
// 45) are the workload's own and are left to the customer's rules.
const xidNeedsAction = `46|48|62|63|64|74|79|92|94|95|119|120|140|154`

// defaultPack is the rule pack every tenant gets. Each rule says why it is
// there and what to do; docs/alerts.md lists them.
func defaultPack() []PackRule {
	return []PackRule{
		{
			Rule: Rule{
				Name:   "GPUFailed",
				Expr:   `hw.status{hw.type="gpu",hw.state="failed"} == 1`,
				Labels: map[string]string{"severity": "critical"},
				Annotations: map[string]string{
					"summary":     `GPU ` + gpuWhere + ` failed: {{ index $labels "nvidia.gpu.health.reason" }}`,
					"description": `The nvml receiver's verdict for this GPU is failed ({{ index $labels "nvidia.gpu.health.reason" }}). Work on it has stopped or will.`,
				},
			},
			Reason: "the GPU is lost, needs a reset or a reboot, or stopped answering (hw.status failed, with the receiver's reason)",
			Action: "reset the GPU (nvidia-smi -r, or through the VM's console); reboot the VM if it does not come back; ask for a replacement if it recurs",
		},
		{
			Rule: Rule{
				Name:   "GPUDegraded",
				Expr:   `hw.status{hw.type="gpu",hw.state="degraded"} == 1`,
				For:    Duration(time.Minute),
				Labels: map[string]string{"severity": "warning"},
				Annotations: map[string]string{
					"summary":     `GPU ` + gpuWhere + ` degraded: {{ index $labels "nvidia.gpu.health.reason" }}`,
					"description": `The GPU works with a fault that needs action at the next chance ({{ index $labels "nvidia.gpu.health.reason" }}).`,
				},
			},
			Reason: "an XID that asks for a reset, uncorrected ECC, a pending or failed row remap, or a recovery action that asks for a drain",
			Action: "move work off the GPU and reset it at the next chance; a failed remap or a recurring XID 74 needs a replacement",
		},
		{
			Rule: Rule{
				Name:          "GPUXidNeedsAction",
				Expr:          `sum by (host.id, host.name, hw.id, hw.name, nvidia.xid.code) (increase(hw.errors{error.type="xid",nvidia.xid.code=~"` + xidNeedsAction + `"}[10m])) > 0`,
				KeepFiringFor: Duration(10 * time.Minute),
				Labels:        map[string]string{"severity": "critical"},
				Annotations: map[string]string{
					"summary":     `XID {{ index $labels "nvidia.xid.code" }} on GPU ` + gpuWhere,
					"description": `{{ $value | humanize }} XID {{ index $labels "nvidia.xid.code" }} event(s) in the last 10 minutes. NVIDIA's XID catalogue says what the code means; the GPU's events page has each one.`,
				},
			},
			Reason: "an XID whose resolution is a reset, a drain, a reboot or a replacement (46, 48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140, 154)",
			Action: "look up the code in NVIDIA's XID catalogue; follow the GPUFailed or GPUDegraded alert that comes with it",
		},
		{
			Rule: Rule{
				Name:   "GPUThermalThrottling",
				Expr:   `max by (host.id, host.name, hw.id, hw.name, nvidia.gpu.throttle.reason) (nvidia.gpu.clock.throttle.active{nvidia.gpu.throttle.reason=~"hw_thermal_slowdown|sw_thermal_slowdown"}) == 1`,
				For:    Duration(10 * time.Minute),
				Labels: map[string]string{"severity": "warning"},
				Annotations: map[string]string{
					"summary":     `GPU ` + gpuWhere + ` slowed for heat for 10 minutes ({{ index $labels "nvidia.gpu.throttle.reason" }})`,
					"description": `The GPU's clocks are held down to cool it: jobs run slower.`,
				},
			},
			Reason: "sustained thermal slowdown: the GPU runs below its clocks",
			Action: "check the GPU's temperature and fan; report it to the provider if the VM's cooling is at fault",
		},
		{
			Rule: Rule{
				Name:   "GPUPowerThrottling",
				Expr:   `max by (host.id, host.name, hw.id, hw.name, nvidia.gpu.throttle.reason) (nvidia.gpu.clock.throttle.active{nvidia.gpu.throttle.reason=~"hw_power_brake_slowdown|hw_slowdown"}) == 1`,
				For:    Duration(10 * time.Minute),
				Labels: map[string]string{"severity": "warning"},
				Annotations: map[string]string{
					"summary":     `GPU ` + gpuWhere + ` slowed by its power supply for 10 minutes ({{ index $labels "nvidia.gpu.throttle.reason" }})`,
					"description": `A hardware slowdown or the power brake holds the GPU's clocks down.`,
				},
			},
			Reason: "sustained hardware power slowdown (power brake, external power signal)",
			Action: "report it to the provider: it is the server's power, not the workload",
		},
		{
			Rule: Rule{
				Name:   "GPUUncorrectableMemoryErrors",
				Expr:   `sum by (host.id, host.name, hw.id, hw.name) (increase(hw.errors{error.type="uncorrected"}[15m])) > 0 or max by (host.id, host.name, hw.id, hw.name) (nvidia.gpu.memory.remapped_rows{nvidia.gpu.remap.state="failed"}) > 0`,
				Labels: map[string]string{"severity": "critical"},
				Annotations: map[string]string{
					"summary":     `Uncorrectable memory errors or a failed row remap on GPU ` + gpuWhere,
					"description": `Data in GPU memory may be corrupt; a failed remap means the GPU cannot repair it.`,
				},
			},
			Reason: "uncorrected ECC errors in the last 15 minutes, or a row remap that failed",
			Action: "restart the affected job; reset the GPU; ask for a replacement after a failed remap",
		},
		{
			Rule: Rule{
				Name:   "AgentNotReporting",
				Expr:   `(time() - max by (host.id, host.name) (tlast_over_time(hw.status[6h]))) > 300`,
				Labels: map[string]string{"severity": "warning"},
				Annotations: map[string]string{
					"summary":     `VM ` + vmWhere + ` has sent no GPU data for {{ $value | humanizeDuration }}`,
					"description": `The VM's agent stopped reporting: the VM is down, the agent stopped, or its network is cut. A VM that stays silent for 6 hours is no longer alerted on.`,
				},
			},
			Reason: "a VM that reported in the last 6 hours has been silent for 5 minutes",
			Action: "check that the VM runs and that otelcol-gpu is active in it (systemctl status otelcol-gpu)",
		},
		{
			Rule: Rule{
				Name:   "GPUIdle",
				Expr:   `max by (host.id, host.name, hw.id, hw.name) (max_over_time(hw.gpu.utilization{hw.gpu.task="general"}[3h])) < 0.01 and max by (host.id, host.name, hw.id, hw.name) (time() - tfirst_over_time(hw.gpu.utilization{hw.gpu.task="general"}[3h])) > 10200`,
				Labels: map[string]string{"severity": "info"},
				Annotations: map[string]string{
					"summary":     `GPU ` + gpuWhere + ` idle for 3 hours`,
					"description": `The GPU did no work for 3 hours while its VM ran: it is paid for and unused.`,
				},
			},
			Reason: "a GPU under 1% busy for 3 hours while its VM reports (money burning)",
			Action: "stop the VM, or move work onto the GPU; silence this alert for VMs kept idle on purpose",
		},
	}
}
