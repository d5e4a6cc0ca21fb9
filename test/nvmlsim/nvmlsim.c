/*
 * nvmlsim: a simulated libnvidia-ml.so.1 for demos and system tests on
 * machines without NVIDIA GPUs. The real otelcol-gpu binary dlopens it
 * exactly as it would NVIDIA's driver library; a fleet file (NVMLSIM_FLEET)
 * says which GPUs exist, how their signals move and which faults strike when.
 *
 * Every exported function has NVML's exact C prototype: the file includes the
 * nvml.h that go-nvml ships, so a mismatch is a compile error. See README.md
 * for the fleet file format. Test and demo equipment only: no production
 * config may point at it.
 */
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include "nvml.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define MAX_GPUS 64
#define MAX_MIG 7
#define MAX_FAULTS 256
#define MAX_PROCS 8
#define SAMPLE_PERIOD_US 200000ULL /* utilization sample grid */
#define SAMPLE_WINDOW_US 10000000ULL /* how far back samples are kept */
#define DRIVER_VERSION "550.90.07"
#define CUDA_DRIVER_VERSION 12040

/* ------------------------------------------------------------------ models */

typedef struct {
    const char *key, *name;
    unsigned mem_mib, power_limit_w, idle_w;
    unsigned clk_sm, clk_mem, clk_video, clk_idle;
    unsigned nvlinks;   /* 0: no NVLink */
    int gpm;            /* GPM metrics (Hopper+) */
    int mig;            /* MIG capable */
    int remap;          /* row remapping (Ampere+); else page retirement */
    int hbm;            /* memory temperature sensor */
    unsigned pci_device_id;
    unsigned pcie_gen, pcie_width;             /* the link's maximum */
    unsigned t_shutdown, t_slowdown, t_gpu_max; /* temperature thresholds, C */
    int nvlink5;        /* NVLink5 per-link error and BER fields (Blackwell) */
    int c2c;            /* a chip-to-chip link to a Grace CPU */
} model_t;

static const model_t models[] = {
    {"h100", "NVIDIA H100 80GB HBM3", 81559, 700, 70, 1980, 2619, 1755, 345, 18, 1, 1, 1, 1, 0x233010DE, 5, 16, 92, 89, 87, 0, 0},
    {"h200", "NVIDIA H200", 143771, 700, 75, 1980, 3201, 1755, 345, 18, 1, 1, 1, 1, 0x233510DE, 5, 16, 92, 89, 87, 0, 0},
    {"a100", "NVIDIA A100-SXM4-80GB", 81920, 400, 60, 1410, 1593, 1275, 210, 12, 0, 1, 1, 1, 0x20B210DE, 4, 16, 92, 89, 85, 0, 0},
    {"l40s", "NVIDIA L40S", 46068, 350, 35, 2520, 9001, 1965, 210, 0, 0, 0, 1, 0, 0x26B910DE, 4, 16, 98, 95, 88, 0, 0},
    /* Grace Blackwell: NVLink5, C2C to the Grace CPU */
    {"gb200", "NVIDIA GB200", 189471, 1200, 120, 1965, 3996, 1740, 345, 18, 1, 1, 1, 1, 0x294110DE, 6, 16, 92, 89, 87, 1, 1},
    /* pre-Ampere: page retirement instead of row remapping, no GPM, no MIG */
    {"v100", "Tesla V100-SXM2-32GB", 32768, 300, 40, 1530, 877, 1372, 135, 6, 0, 0, 0, 1, 0x1DB510DE, 3, 16, 90, 87, 83, 0, 0},
};

static const model_t *find_model(const char *key) {
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
        if (strcmp(models[i].key, key) == 0) return &models[i];
    return NULL;
}

/* ----------------------------------------------------------------- signals */

typedef struct {
    int set;       /* given in the fleet file */
    int wave;      /* 0: constant a; 1: a..b sine over period, phase */
    double a, b, period, phase;
} signal_t;

enum { S_UTIL, S_MEMBW, S_MEMUSED, S_POWER, S_TEMP, S_MEMTEMP, S_ENERGY, S_ENC, S_DEC, S_COUNT };
static const char *signal_names[S_COUNT] = {
    "utilization", "memory_bandwidth", "memory_used", "power", "temperature", "memory_temperature", "energy",
    "encoder", "decoder",
};

static double signal_at(const signal_t *s, double t) {
    if (!s->wave) return s->a;
    double x = 0.5 - 0.5 * cos(2 * M_PI * (t + s->phase) / s->period);
    return s->a + (s->b - s->a) * x;
}

/* ------------------------------------------------------------------ faults */

enum {
    F_LOST, F_UNSUPPORTED, F_NOPERMISSION, F_INIT_FAIL, F_SLOW, F_HANG, F_XID, F_ECC, F_RESET, F_DRIVER_HANG, F_NVLINK_DOWN,
    F_GPU_RESET, F_FIELD_UNSUPPORTED, F_UNKNOWN, F_TIMEOUT, F_RECOVERY_ACTION, F_XID_STORM,
};
static const char *fault_names[] = {
    "lost", "unsupported", "nopermission", "init_fail", "slow", "hang", "xid", "ecc", "reset_counters", "driver_hang", "nvlink_down",
    "gpu_reset", "field_unsupported", "unknown", "timeout", "recovery_action", "xid_storm",
};

typedef struct {
    double start;
    int gpu;           /* -1: every GPU */
    int kind;
    char fn[96];       /* unsupported, nopermission, slow, hang */
    double duration;   /* lost, unknown, timeout (0: until a gpu_reset), init_fail, hang, driver_hang */
    unsigned ms;       /* slow */
    unsigned link;     /* nvlink_down; field_unsupported: the field id */
    unsigned long long code, pid, count; /* xid (count: events), ecc; recovery_action: code */
    int uncorrected;   /* ecc */
    unsigned char applied[MAX_GPUS]; /* ecc, reset_counters: done on that GPU */
    double effective;  /* gpu_reset: when it happened (0: not yet: a process held NVML) */
} fault_t;

/* -------------------------------------------------------------------- GPUs */

struct nvmlDevice_st {
    int gpu;
    int mig; /* -1: the physical GPU, else the MIG slot */
};

typedef struct {
    char profile[16];
    unsigned mem_mib;
    unsigned gi, ci;
    char uuid[96];
    struct nvmlDevice_st h;
} mig_t;

typedef struct {
    unsigned pid;
    unsigned mem_mib;
    unsigned gi, ci; /* its MIG instance; 0xFFFFFFFF: none */
} proc_t;

typedef struct {
    const model_t *model;
    signal_t sig[S_COUNT];
    int virt;
    char uuid[96], serial[32], busid[32];
    unsigned pcie_gen, pcie_width; /* the link as trained now; 0: the model's maximum */
    mig_t mig[MAX_MIG];
    int nmig;
    proc_t procs[MAX_PROCS];
    int nprocs;
    unsigned fans, fan_pct; /* 0 fans: passively cooled */
    int unlicensed;         /* a vGPU guest without its licence */
    int minor;              /* /dev/nvidia<minor>; -1: the NVML index */
    struct nvmlDevice_st h;

    /* integrated state, under lock */
    pthread_mutex_t lock;
    double last_t;
    double energy_mj, temp_c;
    double power_violation_ns, thermal_violation_ns;
    double hw_thermal_violation_ns; /* HW thermal slowdown: at or past the slowdown threshold */
    unsigned pcie_bits;             /* 32: the PCIe byte counters wrap at 2^32 (nvml.h: "can be wrapped") */
    double pcie_start;              /* where the PCIe byte counters start (bytes) */
    double nvlink_kib[NVML_NVLINK_MAX_LINKS]; /* per link, TX; RX is 0.8 x */
    int nvlink_no_aggregate;                  /* the all-links scope (UINT_MAX) answers NOT_SUPPORTED */
    int fabric;                               /* NVSwitch fabric: 0 none (NVLink5 models: completed), 1 not started, 2 in progress, 3 completed, 4 completed with a failed probe */
    double pcie_tx_b, pcie_rx_b; /* PCIe byte counters */
    unsigned long long ecc_corr, ecc_unc;         /* volatile: since the driver loaded or the GPU reset */
    unsigned long long ecc_corr_agg, ecc_unc_agg; /* aggregate: the board's life (a reset keeps them) */
    int was_lost;
} gpu_t;

struct nvmlGpmSample_st {
    int gpu;
    int mig_gi; /* -1: whole GPU */
    double t;
    int filled;
};

#define MAX_SETS 64
struct nvmlEventSet_st {
    unsigned long long registered[MAX_GPUS];
    unsigned delivered[MAX_FAULTS]; /* events of each xid fault delivered to it */
    double created; /* events from before never reach it */
};

static gpu_t gpus[MAX_GPUS];
static int ngpus;
static fault_t faults[MAX_FAULTS];
static int nfaults;
static int loaded;         /* fleet parsed */
static int init_count;
static int sessions; /* how many times NVML went from closed to open */
static double load_time;
static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static char fleet_error[512];

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_t(void) { return mono_now() - load_time; }

static unsigned long long wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

static unsigned long long load_wall_us;

__attribute__((constructor)) static void nvmlsim_load(void) {
    load_time = mono_now();
    load_wall_us = wall_us();
}

/* ------------------------------------------------------------ fleet parser */

static void trim(char *s) {
    char *p = s;
    while (isspace((unsigned char)*p)) p++;
    memmove(s, p, strlen(p) + 1);
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = 0;
}

static int fail(const char *path, int line, const char *fmt, ...) {
    va_list ap;
    char msg[384];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(fleet_error, sizeof(fleet_error), "%s:%d: %s", path, line, msg);
    return -1;
}

static int parse_signal(const char *v, signal_t *s) {
    double a, b, period, phase = 0;
    char extra[8];
    if (sscanf(v, "const %lf %7s", &a, extra) == 1) {
        *s = (signal_t){.set = 1, .wave = 0, .a = a};
        return 0;
    }
    int n = sscanf(v, "wave %lf %lf %lf %lf %7s", &a, &b, &period, &phase, extra);
    if ((n == 3 || n == 4) && period > 0) {
        *s = (signal_t){.set = 1, .wave = 1, .a = a, .b = b, .period = period, .phase = n == 4 ? phase : 0};
        return 0;
    }
    return -1;
}

/* parse_mig reads a MIG layout: GPU instances by profile, each with one
 * compute instance, or several with "*<n>" ("3g.40gb*2": one GPU instance,
 * two compute instances, each its own MIG device sharing the instance's
 * memory). */
static int parse_mig(gpu_t *g, const char *v) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", v);
    g->nmig = 0;
    unsigned gi = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        trim(tok);
        unsigned slices, gib, cis = 1;
        char extra[4];
        int n = sscanf(tok, "%ug.%ugb*%u%3s", &slices, &gib, &cis, extra);
        if ((n != 2 && n != 3) || cis < 1) return -1;
        gi++;
        for (unsigned ci = 0; ci < cis; ci++) {
            if (g->nmig >= MAX_MIG) return -1;
            mig_t *m = &g->mig[g->nmig];
            snprintf(m->profile, sizeof(m->profile), "%ug.%ugb", slices, gib);
            m->mem_mib = gib * 1024;
            m->gi = gi;
            m->ci = ci;
            g->nmig++;
        }
    }
    return g->nmig > 0 ? 0 : -1;
}

static int signal_index(const char *name) {
    for (int i = 0; i < S_COUNT; i++)
        if (strcmp(signal_names[i], name) == 0) return i;
    return -1;
}

static int parse_fault(const char *path, int line, const char *v) {
    if (nfaults >= MAX_FAULTS) return fail(path, line, "more than %d faults", MAX_FAULTS);
    fault_t *f = &faults[nfaults];
    memset(f, 0, sizeof(*f));
    char gpu[16], kind[32], a1[96] = "", a2[32] = "", a3[8] = "";
    int n = sscanf(v, "%lf %15s %31s %95s %31s %7s", &f->start, gpu, kind, a1, a2, a3);
    if (n < 3 || n > 5) return fail(path, line, "fault: want '<start_s> <gpu|*> <kind> [args]', got '%s'", v);
    f->gpu = strcmp(gpu, "*") == 0 ? -1 : atoi(gpu);
    if (f->gpu < -1 || f->gpu >= MAX_GPUS) return fail(path, line, "fault: bad gpu '%s'", gpu);
    f->kind = -1;
    for (int i = 0; i < (int)(sizeof(fault_names) / sizeof(fault_names[0])); i++)
        if (strcmp(fault_names[i], kind) == 0) f->kind = i;
    switch (f->kind) {
    case F_LOST:
    case F_UNKNOWN:
    case F_TIMEOUT:
        /* for a duration (it comes back by itself), or until a gpu_reset
         * of that GPU: what an XID 79 or a GSP timeout really takes */
        if (n == 4 && strcmp(a1, "until_reset") == 0) break;
        if (n != 4 || (f->duration = atof(a1)) <= 0) return fail(path, line, "fault %s: want a duration in seconds or until_reset", kind);
        break;
    case F_RECOVERY_ACTION:
        if (n != 4 || (f->code = strtoull(a1, NULL, 10)) > 7 || (a1[0] < '0' || a1[0] > '9'))
            return fail(path, line, "fault recovery_action: want 0-7 (nvml.h nvmlDeviceGpuRecoveryAction_t)");
        break;
    case F_XID_STORM:
        if (n != 5 || (f->code = strtoull(a1, NULL, 10)) == 0 || (f->count = strtoull(a2, NULL, 10)) == 0 || f->count > 1000000)
            return fail(path, line, "fault xid_storm: want '<code> <count>'");
        break;
    case F_INIT_FAIL:
    case F_DRIVER_HANG:
        if (n != 4 || (f->duration = atof(a1)) <= 0) return fail(path, line, "fault %s: want a duration in seconds", kind);
        break;
    case F_GPU_RESET:
        if (n != 3) return fail(path, line, "fault gpu_reset takes no argument");
        break;
    case F_FIELD_UNSUPPORTED:
        if (n != 4 || atoi(a1) <= 0) return fail(path, line, "fault field_unsupported: want a field id (nvml.h NVML_FI_DEV_*)");
        f->link = (unsigned)atoi(a1);
        break;
    case F_UNSUPPORTED:
    case F_NOPERMISSION:
        if (n != 4 || strncmp(a1, "nvml", 4) != 0) return fail(path, line, "fault %s: want an NVML function name", kind);
        snprintf(f->fn, sizeof(f->fn), "%s", a1);
        break;
    case F_SLOW:
        if (n != 5 || strncmp(a1, "nvml", 4) != 0 || (f->ms = (unsigned)atoi(a2)) == 0)
            return fail(path, line, "fault slow: want '<function> <milliseconds>'");
        snprintf(f->fn, sizeof(f->fn), "%s", a1);
        break;
    case F_HANG:
        if (n != 5 || strncmp(a1, "nvml", 4) != 0 || (f->duration = atof(a2)) <= 0)
            return fail(path, line, "fault hang: want '<function> <seconds>'");
        snprintf(f->fn, sizeof(f->fn), "%s", a1);
        break;
    case F_XID:
        if (n < 4 || (f->code = strtoull(a1, NULL, 10)) == 0) return fail(path, line, "fault xid: want '<code> [pid]'");
        f->pid = n == 5 ? strtoull(a2, NULL, 10) : 0;
        f->count = 1;
        break;
    case F_ECC:
        if (n < 4 || (f->count = strtoull(a1, NULL, 10)) == 0) return fail(path, line, "fault ecc: want '<count> [corrected|uncorrected]'");
        if (n == 5 && strcmp(a2, "uncorrected") == 0) f->uncorrected = 1;
        else if (n == 5 && strcmp(a2, "corrected") != 0) return fail(path, line, "fault ecc: '%s' is neither corrected nor uncorrected", a2);
        break;
    case F_RESET:
        if (n != 3) return fail(path, line, "fault reset_counters takes no argument");
        break;
    case F_NVLINK_DOWN:
        if (n != 5 || (f->duration = atof(a2)) <= 0) return fail(path, line, "fault nvlink_down: want '<link> <seconds>'");
        f->link = (unsigned)atoi(a1);
        break;
    default:
        return fail(path, line, "unknown fault kind '%s' (lost, unsupported, nopermission, init_fail, slow, hang, xid, xid_storm, ecc, reset_counters, driver_hang, nvlink_down, gpu_reset, field_unsupported, unknown, timeout, recovery_action)", kind);
    }
    nfaults++;
    return 0;
}

static int load_fleet(void) {
    const char *path = getenv("NVMLSIM_FLEET");
    if (!path || !*path) {
        snprintf(fleet_error, sizeof(fleet_error), "NVMLSIM_FLEET is not set: it must name a fleet file (see test/nvmlsim/README.md)");
        return -1;
    }
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(fleet_error, sizeof(fleet_error), "%s: %s", path, strerror(errno));
        return -1;
    }
    const model_t *model = find_model("h100");
    signal_t defaults[S_COUNT] = {0};
    int virt = NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH;
    int host = 0;
    char line[512];
    int lineno = 0, rc = 0;
    ngpus = 0;
    nfaults = 0;
    memset(gpus, 0, sizeof(gpus));
    struct pending { int gpu; char key[512]; char val[512]; int line; } *pend = calloc(1024, sizeof(*pend));
    int npend = 0;
    while (rc == 0 && fgets(line, sizeof(line), fp)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        trim(line);
        if (!*line) continue;
        char *eq = strchr(line, '=');
        if (!eq) { rc = fail(path, lineno, "want 'key = value'"); break; }
        *eq = 0;
        char key[512], val[512];
        snprintf(key, sizeof(key), "%s", line);
        snprintf(val, sizeof(val), "%s", eq + 1);
        trim(key);
        trim(val);
        int si;
        if (strcmp(key, "gpus") == 0) {
            ngpus = atoi(val);
            if (ngpus < 1 || ngpus > MAX_GPUS) rc = fail(path, lineno, "gpus: want 1 to %d, got '%s'", MAX_GPUS, val);
        } else if (strcmp(key, "host") == 0) {
            char *end;
            long h = strtol(val, &end, 10);
            if (*val == 0 || *end != 0 || h < 0 || h > 0xffff) rc = fail(path, lineno, "host: want 0 to 65535, got '%s'", val);
            else host = (int)h;
        } else if (strcmp(key, "model") == 0) {
            if (!(model = find_model(val))) rc = fail(path, lineno, "model: unknown '%s' (h100, h200, a100, l40s)", val);
        } else if (strcmp(key, "virtualization") == 0) {
            if (strcmp(val, "passthrough") == 0) virt = NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH;
            else if (strcmp(val, "vgpu") == 0) virt = NVML_GPU_VIRTUALIZATION_MODE_VGPU;
            else if (strcmp(val, "none") == 0) virt = NVML_GPU_VIRTUALIZATION_MODE_NONE;
            else rc = fail(path, lineno, "virtualization: want passthrough, vgpu or none, got '%s'", val);
        } else if (strncmp(key, "signal.", 7) == 0 && (si = signal_index(key + 7)) >= 0) {
            if (parse_signal(val, &defaults[si])) rc = fail(path, lineno, "%s: want 'const <v>' or 'wave <min> <max> <period_s> [phase_s]'", key);
        } else if (strcmp(key, "fault") == 0) {
            rc = parse_fault(path, lineno, val);
        } else if (strncmp(key, "gpu.", 4) == 0) {
            /* per-GPU keys wait until the defaults are all read */
            char *dot = strchr(key + 4, '.');
            if (!dot || npend >= 1024) { rc = fail(path, lineno, "want 'gpu.<index>.<key>'"); break; }
            pend[npend].gpu = atoi(key + 4);
            snprintf(pend[npend].key, sizeof(pend[npend].key), "%s", dot + 1);
            snprintf(pend[npend].val, sizeof(pend[npend].val), "%s", val);
            pend[npend].line = lineno;
            npend++;
        } else {
            rc = fail(path, lineno, "unknown key '%s'", key);
        }
    }
    fclose(fp);
    if (rc == 0 && ngpus == 0) rc = fail(path, lineno, "no 'gpus = N' line");
    for (int i = 0; rc == 0 && i < ngpus; i++) {
        gpu_t *g = &gpus[i];
        g->model = model;
        g->virt = virt;
        g->minor = -1;
        memcpy(g->sig, defaults, sizeof(defaults));
    }
    for (int p = 0; rc == 0 && p < npend; p++) {
        struct pending *e = &pend[p];
        if (e->gpu < 0 || e->gpu >= ngpus) { rc = fail(path, e->line, "gpu.%d: the fleet has %d GPUs", e->gpu, ngpus); break; }
        gpu_t *g = &gpus[e->gpu];
        int si;
        if (strcmp(e->key, "model") == 0) {
            if (!(g->model = find_model(e->val))) rc = fail(path, e->line, "model: unknown '%s'", e->val);
        } else if (strcmp(e->key, "mig") == 0) {
            if (parse_mig(g, e->val)) rc = fail(path, e->line, "mig: want profiles like '1g.10gb,3g.40gb' (at most %d)", MAX_MIG);
        } else if (strcmp(e->key, "vgpu_license") == 0) {
            if (strcmp(e->val, "licensed") == 0) g->unlicensed = 0;
            else if (strcmp(e->val, "unlicensed") == 0) g->unlicensed = 1;
            else rc = fail(path, e->line, "vgpu_license: want licensed or unlicensed");
        } else if (strcmp(e->key, "fans") == 0) {
            if (sscanf(e->val, "%u %u", &g->fans, &g->fan_pct) != 2 || g->fans > 8 || g->fan_pct > 100)
                rc = fail(path, e->line, "fans: want '<count, at most 8> <percent>'");
        } else if (strcmp(e->key, "pcie_link") == 0) {
            if (sscanf(e->val, "%u %u", &g->pcie_gen, &g->pcie_width) != 2 || g->pcie_gen < 1 || g->pcie_width < 1)
                rc = fail(path, e->line, "pcie_link: want '<generation> <width>' (a link trained below its maximum)");
        } else if (strcmp(e->key, "minor") == 0) {
            char *end;
            long m = strtol(e->val, &end, 10);
            if (*e->val == 0 || *end != 0 || m < 0 || m > 255) rc = fail(path, e->line, "minor: want 0 to 255");
            else g->minor = (int)m;
        } else if (strcmp(e->key, "fabric") == 0) {
            static const char *names[] = {"none", "not_started", "in_progress", "completed", "failed"};
            int k = 0;
            while (k < 5 && strcmp(e->val, names[k]) != 0) k++;
            if (k == 5) rc = fail(path, e->line, "fabric: want none, not_started, in_progress, completed or failed");
            else g->fabric = k == 0 ? -1 : k;
        } else if (strcmp(e->key, "nvlink_aggregate") == 0) {
            if (strcmp(e->val, "yes") == 0) g->nvlink_no_aggregate = 0;
            else if (strcmp(e->val, "no") == 0) g->nvlink_no_aggregate = 1;
            else rc = fail(path, e->line, "nvlink_aggregate: want yes or no");
        } else if (strcmp(e->key, "pcie_counter_bits") == 0) {
            g->pcie_bits = (unsigned)atoi(e->val);
            if (g->pcie_bits != 32 && g->pcie_bits != 64) rc = fail(path, e->line, "pcie_counter_bits: want 32 or 64");
        } else if (strcmp(e->key, "pcie_counter_start") == 0) {
            char *end;
            g->pcie_start = strtod(e->val, &end);
            if (*e->val == 0 || *end != 0 || g->pcie_start < 0) rc = fail(path, e->line, "pcie_counter_start: want bytes >= 0");
            g->pcie_tx_b = g->pcie_rx_b = g->pcie_start;
        } else if (strcmp(e->key, "process") == 0) {
            proc_t *pr = &g->procs[g->nprocs];
            int n = g->nprocs >= MAX_PROCS ? 0 : sscanf(e->val, "%u %u %u %u", &pr->pid, &pr->mem_mib, &pr->gi, &pr->ci);
            if (n == 2) pr->gi = pr->ci = 0xFFFFFFFF;
            if (n != 2 && n != 4)
                rc = fail(path, e->line, "process: want '<pid> <memory_mib> [<gpu_instance> <compute_instance>]'");
            else g->nprocs++;
        } else if (strncmp(e->key, "signal.", 7) == 0 && (si = signal_index(e->key + 7)) >= 0) {
            if (parse_signal(e->val, &g->sig[si])) rc = fail(path, e->line, "%s: want 'const <v>' or 'wave <min> <max> <period_s> [phase_s]'", e->key);
        } else {
            rc = fail(path, e->line, "unknown per-GPU key '%s'", e->key);
        }
    }
    free(pend);
    for (int f = 0; rc == 0 && f < nfaults; f++)
        if (faults[f].gpu >= ngpus) rc = fail(path, 0, "fault on gpu %d: the fleet has %d GPUs", faults[f].gpu, ngpus);
    if (rc) return -1;
    for (int i = 0; i < ngpus; i++) {
        gpu_t *g = &gpus[i];
        if (g->nmig && !g->model->mig) return fail(path, 0, "gpu.%d: %s has no MIG", i, g->model->name);
        snprintf(g->uuid, sizeof(g->uuid), "GPU-5e1f%04x-%04x-4000-8000-%012x", host, i, 0x51a000 + i);
        snprintf(g->serial, sizeof(g->serial), "1650%09d", 124000 + 100 * host + i);
        snprintf(g->busid, sizeof(g->busid), "00000000:%02X:00.0", 0x18 + 0x10 * i);
        g->h = (struct nvmlDevice_st){.gpu = i, .mig = -1};
        for (int m = 0; m < g->nmig; m++) {
            snprintf(g->mig[m].uuid, sizeof(g->mig[m].uuid), "MIG-5e1f%04x-%04x-4000-8000-%012x", host, i, 0x316000 + m);
            g->mig[m].h = (struct nvmlDevice_st){.gpu = i, .mig = m};
        }
        pthread_mutex_init(&g->lock, NULL);
        g->last_t = 0;
        g->temp_c = 30;
    }
    return 0;
}

/* --------------------------------------------------------- the simulation */

static double util_at(gpu_t *g, double t) {
    double u = g->sig[S_UTIL].set ? signal_at(&g->sig[S_UTIL], t) : 0;
    return u < 0 ? 0 : u > 100 ? 100 : u;
}

static double membw_at(gpu_t *g, double t) {
    return g->sig[S_MEMBW].set ? signal_at(&g->sig[S_MEMBW], t) : 0.6 * util_at(g, t);
}

static double enc_at(gpu_t *g, double t) { return g->sig[S_ENC].set ? signal_at(&g->sig[S_ENC], t) : 0; }
static double dec_at(gpu_t *g, double t) { return g->sig[S_DEC].set ? signal_at(&g->sig[S_DEC], t) : 0; }

static double power_at(gpu_t *g, double t) {
    if (g->sig[S_POWER].set) return signal_at(&g->sig[S_POWER], t);
    const model_t *m = g->model;
    return m->idle_w + (0.92 * m->power_limit_w - m->idle_w) * util_at(g, t) / 100.0;
}

/* advance integrates energy, temperature, throttle time and NVLink traffic
 * from the last query to t, in steps of at most 50 ms. */
static int nvlink_down_at(int idx, unsigned link, double t);

/* NVLink data rate per link and direction at full utilization: NVLink4
 * (H100, H200) is 25 GB/s, NVLink3 (A100) 25 GB/s, NVLink2 (V100) 25 GB/s:
 * 900, 600 and 300 GB/s over the GPU's 18, 12 and 6 links both ways. */
#define NVLINK_LINK_BPS 25.0e9

static void advance(gpu_t *g, double t) {
    const double step = 0.05, tau = 30.0;
    while (g->last_t < t) {
        double dt = t - g->last_t < step ? t - g->last_t : step;
        double mid = g->last_t + dt / 2, p = power_at(g, mid), u = util_at(g, mid);
        g->energy_mj += p * dt * 1000.0;
        double target = 28.0 + 0.075 * p;
        g->temp_c += (target - g->temp_c) * (1.0 - exp(-dt / tau));
        if (p >= 0.95 * g->model->power_limit_w) g->power_violation_ns += dt * 1e9;
        if (g->temp_c >= 85.0) g->thermal_violation_ns += dt * 1e9;
        if (g->temp_c >= g->model->t_slowdown) g->hw_thermal_violation_ns += dt * 1e9;
        /* each active link carries its share; a link that is down does
         * not count, and keeps its counter for when it comes back */
        for (unsigned l = 0; l < g->model->nvlinks; l++)
            if (!nvlink_down_at((int)(g - gpus), l, mid)) g->nvlink_kib[l] += u / 100.0 * NVLINK_LINK_BPS / 1024.0 * dt;
        g->pcie_tx_b += u * 2000.0 * 1024 * dt;  /* as GetPcieThroughput: u*2000 KB/s */
        g->pcie_rx_b += u * 3000.0 * 1024 * dt;
        g->last_t += dt;
    }
}

static void apply_one_shot_faults(gpu_t *g, int idx, double t) {
    for (int i = 0; i < nfaults; i++) {
        fault_t *f = &faults[i];
        if ((f->gpu != idx && f->gpu != -1) || f->start > t) continue;
        if (f->kind == F_ECC && !f->applied[idx]) {
            f->applied[idx] = 1;
            if (f->uncorrected) g->ecc_unc += f->count, g->ecc_unc_agg += f->count;
            else g->ecc_corr += f->count, g->ecc_corr_agg += f->count;
        } else if (f->kind == F_RESET && !f->applied[idx]) {
            f->applied[idx] = 1;
            g->energy_mj = 0;
            g->ecc_corr = g->ecc_unc = 0;
            g->power_violation_ns = g->thermal_violation_ns = g->hw_thermal_violation_ns = 0;
            memset(g->nvlink_kib, 0, sizeof(g->nvlink_kib));
            g->pcie_tx_b = g->pcie_rx_b = 0;
        }
    }
}

/* reset_after is when the first gpu_reset of GPU idx after start comes
 * (HUGE_VAL: none). */
static double reset_after(int idx, double start) {
    double at = HUGE_VAL;
    for (int i = 0; i < nfaults; i++) {
        fault_t *f = &faults[i];
        if (f->kind == F_GPU_RESET && (f->gpu == idx || f->gpu == -1) && f->effective > 0 && f->start > start && f->effective < at)
            at = f->effective;
    }
    return at;
}

/* A GPU reset (nvidia-smi -r) proceeds only while no process holds NVML:
 * at its time if NVML is closed then, else when the last client closes it.
 * closed_since is when the last nvmlShutdown closed it (-1: open). Callers
 * hold global_lock. */
static double closed_since = 0;

static void apply_resets(double now, int at_open) {
    for (int i = 0; i < nfaults; i++) {
        fault_t *f = &faults[i];
        if (f->kind != F_GPU_RESET || f->effective > 0 || f->start > now) continue;
        if (at_open) {
            /* closed since before the reset's time: it happened then */
            if (closed_since >= 0 && closed_since <= f->start) f->effective = f->start;
        } else {
            f->effective = now;
        }
    }
}

/* active_at says whether a fault of kind (lost, unknown, timeout) holds
 * GPU idx at t: from its start for its duration, or until a gpu_reset. */
static int active_at(int kind, int idx, double t) {
    for (int i = 0; i < nfaults; i++) {
        fault_t *f = &faults[i];
        if (f->kind != kind || (f->gpu != idx && f->gpu != -1) || t < f->start) continue;
        double end = f->duration > 0 ? f->start + f->duration : reset_after(idx, f->start);
        if (t < end) return 1;
    }
    return 0;
}

static int lost_at(int idx, double t) { return active_at(F_LOST, idx, t); }

/* recovery_action_at is the driver's GPU recovery action for GPU idx at t:
 * the last recovery_action fault started by then, NONE once a gpu_reset
 * after it took effect (the driver clears it with the reset). */
static unsigned recovery_action_at(int idx, double t) {
    const fault_t *last = NULL;
    for (int i = 0; i < nfaults; i++) {
        const fault_t *f = &faults[i];
        if (f->kind == F_RECOVERY_ACTION && (f->gpu == idx || f->gpu == -1) && f->start <= t && (!last || f->start >= last->start))
            last = f;
    }
    if (!last || reset_after(idx, last->start) <= t) return NVML_GPU_RECOVERY_ACTION_NONE;
    return (unsigned)last->code;
}

static int nvlink_down_at(int idx, unsigned link, double t) {
    for (int i = 0; i < nfaults; i++) {
        fault_t *f = &faults[i];
        if (f->kind == F_NVLINK_DOWN && (f->gpu == idx || f->gpu == -1) && f->link == link && t >= f->start && t < f->start + f->duration)
            return 1;
    }
    return 0;
}

static int field_unsupported(int idx, unsigned id) {
    for (int i = 0; i < nfaults; i++) {
        fault_t *f = &faults[i];
        if (f->kind == F_FIELD_UNSUPPORTED && (f->gpu == idx || f->gpu == -1) && f->link == id) return 1;
    }
    return 0;
}

/* ---------------------------------------------------- calls and latency */

/* Every entry point is counted per function; with NVMLSIM_CALLS set the
 * counts are written there ("<function> <count>" lines) at each
 * nvmlShutdown and when the library unloads. NVMLSIM_LATENCY=realistic
 * makes each call take about what it takes on a datacenter driver. */
#define MAX_CALL_NAMES 256
static struct {
    const char *fn;
    unsigned long long n;
} call_counts[MAX_CALL_NAMES];
static int ncall_names;
static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;
static int realistic_latency = -1;

static void count_call(const char *fn) {
    pthread_mutex_lock(&calls_lock);
    int i = 0;
    for (; i < ncall_names; i++)
        if (call_counts[i].fn == fn || strcmp(call_counts[i].fn, fn) == 0) break;
    if (i == ncall_names && ncall_names < MAX_CALL_NAMES) call_counts[ncall_names++].fn = fn;
    if (i < MAX_CALL_NAMES) call_counts[i].n++;
    pthread_mutex_unlock(&calls_lock);
}

/* How often each GPU was asked each field id (NVMLSIM_FIELDS: "<gpu>
 * <field> <count>" lines, written with the call counts), to show that a
 * field answered NOT_SUPPORTED is not asked again. */
#define MAX_FIELD_ID 512
static unsigned long long fields_asked[MAX_GPUS][MAX_FIELD_ID];

static void write_fields(void) {
    const char *path = getenv("NVMLSIM_FIELDS");
    if (!path || !*path) return;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return;
    pthread_mutex_lock(&calls_lock);
    for (int g = 0; g < MAX_GPUS; g++)
        for (int f = 0; f < MAX_FIELD_ID; f++)
            if (fields_asked[g][f]) fprintf(fp, "%d %d %llu\n", g, f, fields_asked[g][f]);
    pthread_mutex_unlock(&calls_lock);
    if (fclose(fp) == 0) rename(tmp, path);
}

static void write_calls(void) {
    write_fields();
    const char *path = getenv("NVMLSIM_CALLS");
    if (!path || !*path) return;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return;
    pthread_mutex_lock(&calls_lock);
    for (int i = 0; i < ncall_names; i++) fprintf(fp, "%s %llu\n", call_counts[i].fn, call_counts[i].n);
    pthread_mutex_unlock(&calls_lock);
    if (fclose(fp) == 0) rename(tmp, path);
}

__attribute__((destructor)) static void nvmlsim_unload(void) { write_calls(); }

/* Typical latencies of a GSP-era datacenter driver: most queries are a few
 * tens of microseconds, some ask the GPU's firmware, and GetPcieThroughput
 * samples the link for about 20 ms. */
static double latency_of(const char *fn) {
    static const struct {
        const char *fn;
        double s;
    } table[] = {
        {"nvmlDeviceGetPcieThroughput", 0.020},
        {"nvmlDeviceGetSamples", 0.0003},
        {"nvmlDeviceGetFieldValues", 0.0005},
        {"nvmlGpmSampleGet", 0.001},
        {"nvmlDeviceGetProcessUtilization", 0.001},
        {"nvmlDeviceGetComputeRunningProcesses_v3", 0.0005},
        {"nvmlDeviceGetNvLinkErrorCounter", 0.0001},
        {"nvmlDeviceGetViolationStatus", 0.0001},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].fn, fn) == 0) return table[i].s;
    return 0.00005;
}

static void sleep_seconds(double s);

static void simulate_latency(const char *fn) {
    if (realistic_latency < 0) {
        const char *v = getenv("NVMLSIM_LATENCY");
        realistic_latency = v && strcmp(v, "realistic") == 0;
    }
    if (realistic_latency) sleep_seconds(latency_of(fn));
}

/* state locks a GPU, brings its simulation up to now and returns it. */
static gpu_t *state(int idx, double t) {
    gpu_t *g = &gpus[idx];
    pthread_mutex_lock(&g->lock);
    int lost = lost_at(idx, t);
    if (g->was_lost && !lost) {
        /* back from a reset: the driver's counters start over (the
         * aggregate ECC counts are the board's and stay) */
        g->energy_mj = 0;
        g->ecc_corr = g->ecc_unc = 0;
        g->power_violation_ns = g->thermal_violation_ns = g->hw_thermal_violation_ns = 0;
        memset(g->nvlink_kib, 0, sizeof(g->nvlink_kib));
        g->pcie_tx_b = g->pcie_rx_b = 0;
    }
    g->was_lost = lost;
    advance(g, t);
    apply_one_shot_faults(g, idx, t);
    return g;
}

static void release(gpu_t *g) { pthread_mutex_unlock(&g->lock); }

static void sleep_seconds(double s) {
    if (s <= 0) return;
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* driver_hang_wait blocks while a driver_hang fault is on: the whole driver
 * stuck (a global lock held through a GSP timeout), so every entry point
 * that takes it, init, enumeration, every per-GPU call, the event wait and
 * shutdown, returns only when the hang ends. */
static void driver_hang_wait(void) {
    for (;;) {
        double t = now_t(), until = 0;
        for (int i = 0; i < nfaults; i++) {
            fault_t *f = &faults[i];
            if (f->kind == F_DRIVER_HANG && t >= f->start && t < f->start + f->duration && f->start + f->duration > until)
                until = f->start + f->duration;
        }
        if (until == 0) return;
        sleep_seconds(until - t);
    }
}

/* guard runs before every per-device function: initialised, a valid handle,
 * not lost, not refused by a fault, and the injected delays. */
static nvmlReturn_t guard(nvmlDevice_t d, const char *fn, gpu_t **out, int *mig) {
    count_call(fn);
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    driver_hang_wait();
    simulate_latency(fn);
    struct nvmlDevice_st *h = d.handle;
    if (!h || h->gpu < 0 || h->gpu >= ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    double t = now_t();
    for (int i = 0; i < nfaults; i++) {
        fault_t *f = &faults[i];
        if ((f->gpu != h->gpu && f->gpu != -1) || t < f->start || strcmp(f->fn, fn) != 0) continue;
        if (f->kind == F_SLOW) sleep_seconds(f->ms / 1000.0);
        if (f->kind == F_HANG && t < f->start + f->duration) sleep_seconds(f->start + f->duration - t);
    }
    t = now_t();
    if (lost_at(h->gpu, t)) return NVML_ERROR_GPU_IS_LOST;
    /* what a GPU looks like after a GSP RPC timeout (XID 119): open, and
     * every call on it failing */
    if (active_at(F_UNKNOWN, h->gpu, t)) return NVML_ERROR_UNKNOWN;
    if (active_at(F_TIMEOUT, h->gpu, t)) return NVML_ERROR_TIMEOUT;
    for (int i = 0; i < nfaults; i++) {
        fault_t *f = &faults[i];
        if ((f->gpu != h->gpu && f->gpu != -1) || t < f->start || strcmp(f->fn, fn) != 0) continue;
        if (f->kind == F_UNSUPPORTED) return NVML_ERROR_NOT_SUPPORTED;
        if (f->kind == F_NOPERMISSION) return NVML_ERROR_NO_PERMISSION;
    }
    if (out) *out = &gpus[h->gpu];
    if (mig) *mig = h->mig;
    return NVML_SUCCESS;
}

#define GUARD(dev, ...)                                              \
    gpu_t *g;                                                        \
    int mig;                                                         \
    nvmlReturn_t gr_ = guard(dev, __func__, &g, &mig);               \
    if (gr_ != NVML_SUCCESS) return gr_;                             \
    if (0 __VA_OPT__(|| !(__VA_ARGS__))) return NVML_ERROR_INVALID_ARGUMENT; \
    (void)mig

/* A vGPU guest sees no board-level sensors or counters. */
#define NOT_ON_VGPU()                                                           \
    if (g->virt == NVML_GPU_VIRTUALIZATION_MODE_VGPU) return NVML_ERROR_NOT_SUPPORTED

#define PHYSICAL_ONLY() \
    if (mig >= 0) return NVML_ERROR_NOT_SUPPORTED

/* NVML documents utilization, its samples, encoder/decoder and process
 * utilization as not supported on a GPU with MIG enabled. */
#define NOT_ON_MIG_PARENT() \
    if (g->nmig > 0) return NVML_ERROR_NOT_SUPPORTED

static nvmlReturn_t copy_string(char *dst, unsigned len, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

/* -------------------------------------------------------- init, system */

EXPORT nvmlReturn_t nvmlInit_v2(void) {
    count_call(__func__);
    pthread_mutex_lock(&global_lock);
    nvmlReturn_t ret = NVML_SUCCESS;
    if (!loaded) {
        if (load_fleet() != 0) {
            fprintf(stderr, "nvmlsim: %s\n", fleet_error);
            ret = NVML_ERROR_UNKNOWN;
        } else {
            loaded = 1;
        }
    }
    if (ret == NVML_SUCCESS) {
        double t = now_t();
        for (int i = 0; i < nfaults; i++)
            if (faults[i].kind == F_INIT_FAIL && t >= faults[i].start && t < faults[i].start + faults[i].duration)
                ret = NVML_ERROR_DRIVER_NOT_LOADED;
    }
    if (ret == NVML_SUCCESS) {
        if (init_count == 0) {
            apply_resets(now_t(), 1);
            sessions++;
        }
        init_count++;
        closed_since = -1;
    }
    pthread_mutex_unlock(&global_lock);
    driver_hang_wait();
    return ret;
}

EXPORT nvmlReturn_t nvmlInit(void) { return nvmlInit_v2(); }

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
    count_call(__func__);
    driver_hang_wait();
    pthread_mutex_lock(&global_lock);
    nvmlReturn_t ret = init_count > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (init_count > 0) init_count--;
    if (ret == NVML_SUCCESS && init_count == 0) {
        apply_resets(now_t(), 0);
        closed_since = now_t();
    }
    pthread_mutex_unlock(&global_lock);
    write_calls();
    return ret;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    driver_hang_wait();
    return copy_string(version, length, DRIVER_VERSION);
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion) {
    if (!cudaDriverVersion) return NVML_ERROR_INVALID_ARGUMENT;
    *cudaDriverVersion = CUDA_DRIVER_VERSION;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion) {
    return nvmlSystemGetCudaDriverVersion(cudaDriverVersion);
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
    count_call(__func__);
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    driver_hang_wait();
    if (!deviceCount) return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = (unsigned)ngpus;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount) { return nvmlDeviceGetCount_v2(deviceCount); }

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    count_call(__func__);
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    driver_hang_wait();
    if (!device || index >= (unsigned)ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    if (lost_at((int)index, now_t())) return NVML_ERROR_GPU_IS_LOST;
    device->handle = &gpus[index].h;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    count_call(__func__);
    driver_hang_wait();
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < ngpus; i++) {
        if (strcmp(gpus[i].uuid, uuid) == 0) {
            if (lost_at(i, now_t())) return NVML_ERROR_GPU_IS_LOST;
            device->handle = &gpus[i].h;
            return NVML_SUCCESS;
        }
        for (int m = 0; m < gpus[i].nmig; m++) {
            if (strcmp(gpus[i].mig[m].uuid, uuid) == 0) {
                device->handle = &gpus[i].mig[m].h;
                return NVML_SUCCESS;
            }
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

/* ------------------------------------------------------------- identity */

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    GUARD(device);
    return copy_string(uuid, length, mig >= 0 ? g->mig[mig].uuid : g->uuid);
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    GUARD(device);
    if (mig >= 0) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s MIG %s", g->model->name, g->mig[mig].profile);
        return copy_string(name, length, buf);
    }
    return copy_string(name, length, g->model->name);
}

EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minorNumber) {
    GUARD(device, minorNumber);
    PHYSICAL_ONLY();
    *minorNumber = g->minor >= 0 ? (unsigned)g->minor : (unsigned)(g - gpus);
    return NVML_SUCCESS;
}

/* The NVSwitch fabric registration (v3, and v2 for older callers): a GB200
 * (NVL72) has completed it unless the fleet says otherwise; other models
 * are outside a fabric (NOT_SUPPORTED) unless gpu.<i>.fabric sets one. */
EXPORT nvmlReturn_t nvmlDeviceGetGpuFabricInfoV(nvmlDevice_t device, nvmlGpuFabricInfoV_t *info) {
    GUARD(device, info);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    int f = g->fabric ? g->fabric : (g->model->nvlink5 ? 3 : -1);
    if (f < 0) return NVML_ERROR_NOT_SUPPORTED;
    if (info->version != nvmlGpuFabricInfo_v3 && info->version != nvmlGpuFabricInfo_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    unsigned version = info->version;
    if (version == nvmlGpuFabricInfo_v2) {
        nvmlGpuFabricInfo_v2_t *v2 = (nvmlGpuFabricInfo_v2_t *)info;
        memset(v2, 0, sizeof(*v2));
        v2->version = version;
        v2->state = f == 4 ? NVML_GPU_FABRIC_STATE_COMPLETED : (nvmlGpuFabricState_t)f;
        v2->status = f == 4 ? NVML_ERROR_UNKNOWN : NVML_SUCCESS;
        v2->cliqueId = 1;
        return NVML_SUCCESS;
    }
    memset(info, 0, sizeof(*info));
    info->version = version;
    info->state = f == 4 ? NVML_GPU_FABRIC_STATE_COMPLETED : (nvmlGpuFabricState_t)f;
    info->status = f == 4 ? NVML_ERROR_UNKNOWN : NVML_SUCCESS;
    info->cliqueId = 1;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length) {
    GUARD(device);
    PHYSICAL_ONLY();
    return copy_string(serial, length, g->serial);
}

EXPORT nvmlReturn_t nvmlDeviceGetVbiosVersion(nvmlDevice_t device, char *version, unsigned int length) {
    GUARD(device);
    PHYSICAL_ONLY();
    return copy_string(version, length, "96.00.89.00.01");
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    GUARD(device, pci);
    PHYSICAL_ONLY();
    memset(pci, 0, sizeof(*pci));
    int idx = (int)(g - gpus);
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "0000:%02X:00.0", 0x18 + 0x10 * idx);
    snprintf(pci->busId, sizeof(pci->busId), "%s", g->busid);
    pci->domain = 0;
    pci->bus = 0x18 + 0x10 * idx;
    pci->device = 0;
    pci->pciDeviceId = g->model->pci_device_id;
    pci->pciSubSystemId = 0x16C110DE;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(device, pci); }
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(device, pci); }

EXPORT nvmlReturn_t nvmlDeviceGetVirtualizationMode(nvmlDevice_t device, nvmlGpuVirtualizationMode_t *mode) {
    GUARD(device, mode);
    *mode = (nvmlGpuVirtualizationMode_t)g->virt;
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------- utilization */

static nvmlReturn_t samples(gpu_t *g, double (*fn)(gpu_t *, double), unsigned long long last, nvmlValueType_t *vt,
                            unsigned int *count, nvmlSample_t *out) {
    unsigned long long now = wall_us();
    double t_now = now_t();
    unsigned long long first = now - SAMPLE_WINDOW_US;
    if (first < load_wall_us) first = load_wall_us; /* nothing was sampled before the driver loaded */
    if (last + 1 > first) first = last + 1;
    first = (first + SAMPLE_PERIOD_US - 1) / SAMPLE_PERIOD_US * SAMPLE_PERIOD_US;
    unsigned n = first > now ? 0 : (unsigned)((now - first) / SAMPLE_PERIOD_US + 1);
    *vt = NVML_VALUE_TYPE_UNSIGNED_INT;
    if (n == 0) return NVML_ERROR_NOT_FOUND;
    if (!out) {
        *count = n;
        return NVML_SUCCESS;
    }
    if (*count < n) n = *count;
    for (unsigned i = 0; i < n; i++) {
        unsigned long long ts = first + i * SAMPLE_PERIOD_US;
        double t = t_now - (double)(now - ts) / 1e6;
        out[i].timeStamp = ts;
        out[i].sampleValue.uiVal = (unsigned)lround(fn(g, t < 0 ? 0 : t));
    }
    *count = n;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetSamples(nvmlDevice_t device, nvmlSamplingType_t type, unsigned long long lastSeenTimeStamp,
                                         nvmlValueType_t *sampleValType, unsigned int *sampleCount, nvmlSample_t *samplesOut) {
    GUARD(device, sampleValType && sampleCount);
    PHYSICAL_ONLY();
    NOT_ON_MIG_PARENT();
    switch (type) {
    case NVML_GPU_UTILIZATION_SAMPLES:
        return samples(g, util_at, lastSeenTimeStamp, sampleValType, sampleCount, samplesOut);
    case NVML_MEMORY_UTILIZATION_SAMPLES:
        return samples(g, membw_at, lastSeenTimeStamp, sampleValType, sampleCount, samplesOut);
    case NVML_ENC_UTILIZATION_SAMPLES:
        return samples(g, enc_at, lastSeenTimeStamp, sampleValType, sampleCount, samplesOut);
    case NVML_DEC_UTILIZATION_SAMPLES:
        return samples(g, dec_at, lastSeenTimeStamp, sampleValType, sampleCount, samplesOut);
    default:
        return NVML_ERROR_NOT_SUPPORTED;
    }
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    GUARD(device, utilization);
    PHYSICAL_ONLY();
    NOT_ON_MIG_PARENT();
    double t = now_t();
    utilization->gpu = (unsigned)lround(util_at(g, t));
    utilization->memory = (unsigned)lround(membw_at(g, t));
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs) {
    GUARD(device, utilization && samplingPeriodUs);
    PHYSICAL_ONLY();
    NOT_ON_MIG_PARENT();
    *utilization = (unsigned)lround(enc_at(g, now_t()));
    *samplingPeriodUs = 167000;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs) {
    GUARD(device, utilization && samplingPeriodUs);
    PHYSICAL_ONLY();
    NOT_ON_MIG_PARENT();
    *utilization = (unsigned)lround(dec_at(g, now_t()));
    *samplingPeriodUs = 167000;
    return NVML_SUCCESS;
}

/* --------------------------------------------------------------- memory */

#define RESERVED_MIB 512ULL

static void memory(gpu_t *g, int mig, unsigned long long *total, unsigned long long *used, unsigned long long *reserved) {
    double t = now_t();
    double used_mib = g->sig[S_MEMUSED].set ? signal_at(&g->sig[S_MEMUSED], t) : 0;
    if (mig >= 0) {
        unsigned long long mig_total = (unsigned long long)g->mig[mig].mem_mib << 20;
        unsigned long long all = (unsigned long long)g->model->mem_mib << 20;
        *total = mig_total;
        *reserved = 0;
        *used = (unsigned long long)(used_mib * 1048576.0 * (double)mig_total / (double)all);
    } else {
        *total = (unsigned long long)g->model->mem_mib << 20;
        *reserved = RESERVED_MIB << 20;
        *used = (unsigned long long)(used_mib * 1048576.0);
    }
    if (*used + *reserved > *total) *used = *total - *reserved;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *mem) {
    GUARD(device, mem);
    if (mem->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memory(g, mig, &mem->total, &mem->used, &mem->reserved);
    mem->free = mem->total - mem->used - mem->reserved;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *mem) {
    GUARD(device, mem);
    unsigned long long reserved;
    memory(g, mig, &mem->total, &mem->used, &reserved);
    mem->used += reserved; /* v1 counts the reserved memory as used */
    mem->free = mem->total - mem->used;
    return NVML_SUCCESS;
}

/* ---------------------------------------------------- power and thermal */

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    GUARD(device, power);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    *power = (unsigned)lround(power_at(g, now_t()) * 1000.0);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    GUARD(device, limit);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    *limit = g->model->power_limit_w * 1000;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) {
    GUARD(device, energy);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    int idx = (int)(g - gpus);
    gpu_t *s = state(idx, now_t());
    *energy = s->sig[S_ENERGY].set ? (unsigned long long)signal_at(&s->sig[S_ENERGY], s->last_t) : (unsigned long long)s->energy_mj;
    release(s);
    return NVML_SUCCESS;
}

static double temperature(gpu_t *g) {
    double t = now_t();
    if (g->sig[S_TEMP].set) return signal_at(&g->sig[S_TEMP], t);
    gpu_t *s = state((int)(g - gpus), t);
    double c = s->temp_c;
    release(s);
    return c;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensorType, unsigned int *temp) {
    GUARD(device, temp);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    if (sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = (unsigned)lround(temperature(g));
    return NVML_SUCCESS;
}

/* The versioned successor of nvmlDeviceGetTemperature (CUDA 13's nvml.h
 * deprecates the old one). */
EXPORT nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_t *t) {
    GUARD(device, t);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    if (t->version != nvmlTemperature_v1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (t->sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    t->temperature = (int)lround(temperature(g));
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values) {
    GUARD(device, values && valuesCount >= 0);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    long long ts = (long long)wall_us();
    int idx = (int)(g - gpus);
    for (int i = 0; i < valuesCount; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = ts;
        v->latencyUsec = 0;
        v->nvmlReturn = NVML_SUCCESS;
        if (v->fieldId < MAX_FIELD_ID) {
            pthread_mutex_lock(&calls_lock);
            fields_asked[idx][v->fieldId]++;
            pthread_mutex_unlock(&calls_lock);
        }
        if (field_unsupported(idx, v->fieldId)) {
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
            continue;
        }
        switch (v->fieldId) {
        case NVML_FI_DEV_MEMORY_TEMP:
            if (!g->model->hbm) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = (unsigned)lround(g->sig[S_MEMTEMP].set ? signal_at(&g->sig[S_MEMTEMP], now_t()) : temperature(g) + 6);
            break;
        case NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX:
        case NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: {
            /* a link's counter, or (scope UINT_MAX) the sum over every
             * link, down ones included, as nvml.h describes */
            int all = v->scopeId == 0xFFFFFFFFu;
            if (g->model->nvlinks == 0 || (all && g->nvlink_no_aggregate) || (!all && v->scopeId >= g->model->nvlinks)) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            gpu_t *s = state((int)(g - gpus), now_t());
            double kib = 0;
            for (unsigned l = 0; l < g->model->nvlinks; l++)
                if (all || l == v->scopeId) kib += s->nvlink_kib[l];
            release(s);
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->value.ullVal = (unsigned long long)(v->fieldId == NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX ? kib : 0.8 * kib);
            break;
        }
        case NVML_FI_DEV_POWER_AVERAGE:
            /* a one-second average, Ampere and later except GA100 */
            if (strcmp(g->model->key, "a100") == 0) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = (unsigned)lround(power_at(g, now_t()) * 1000.0);
            break;
        case NVML_FI_DEV_POWER_INSTANT:
            /* the draw now, on every architecture */
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = (unsigned)lround(power_at(g, now_t()) * 1000.0);
            break;
        case NVML_FI_DEV_POWER_CURRENT_LIMIT:
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = g->model->power_limit_w * 1000;
            break;
        case NVML_FI_DEV_NVLINK_LINK_COUNT:
            if (g->model->nvlinks == 0) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = g->model->nvlinks;
            break;
        case NVML_FI_DEV_NVLINK_GET_STATE:
            if (g->model->nvlinks == 0) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            if (v->scopeId >= g->model->nvlinks) {
                v->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = nvlink_down_at(idx, v->scopeId, now_t()) ? NVML_NVLINK_STATE_INACTIVE : NVML_NVLINK_STATE_ACTIVE;
            break;
        case NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL:
        case NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL:
        case NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL:
        case NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL:
            if (g->model->nvlinks == 0) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->value.ullVal = 0; /* as GetNvLinkErrorCounter: no link errors modelled */
            break;
        case NVML_FI_DEV_PCIE_REPLAY_COUNTER:
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->value.ullVal = 0;
            break;
        case NVML_FI_DEV_PCIE_REPLAY_ROLLOVER_COUNTER:
        case NVML_FI_DEV_PCIE_L0_TO_RECOVERY_COUNTER:
        case NVML_FI_DEV_PCIE_COUNT_CORRECTABLE_ERRORS:
        case NVML_FI_DEV_PCIE_COUNT_NAKS_RECEIVED:
        case NVML_FI_DEV_PCIE_COUNT_RECEIVER_ERROR:
        case NVML_FI_DEV_PCIE_COUNT_BAD_TLP:
        case NVML_FI_DEV_PCIE_COUNT_NAKS_SENT:
        case NVML_FI_DEV_PCIE_COUNT_BAD_DLLP:
        case NVML_FI_DEV_PCIE_COUNT_NON_FATAL_ERROR:
        case NVML_FI_DEV_PCIE_COUNT_FATAL_ERROR:
        case NVML_FI_DEV_PCIE_COUNT_UNSUPPORTED_REQ:
        case NVML_FI_DEV_PCIE_COUNT_LCRC_ERROR:
            /* the PCIe error counters (R520+ boards); a V100 answers none
             * but the rollover counter. Correctable errors and NAKs tick
             * once a minute, the rest stay 0. */
            if (strcmp(g->model->key, "v100") == 0 && v->fieldId != NVML_FI_DEV_PCIE_REPLAY_ROLLOVER_COUNTER) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->value.ullVal = (v->fieldId == NVML_FI_DEV_PCIE_COUNT_CORRECTABLE_ERRORS || v->fieldId == NVML_FI_DEV_PCIE_COUNT_NAKS_RECEIVED)
                                  ? (unsigned long long)(now_t() / 60.0) : 0;
            break;
        case NVML_FI_DEV_NVLINK_ECC_DATA_ERROR_COUNT_TOTAL:
            /* NVLink data ECC: Hopper and later */
            if (g->model->nvlinks == 0 || !g->model->gpm) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->value.ullVal = 0;
            break;
        case NVML_FI_DEV_NVLINK_COUNT_MALFORMED_PACKET_ERRORS:
        case NVML_FI_DEV_NVLINK_COUNT_BUFFER_OVERRUN_ERRORS:
        case NVML_FI_DEV_NVLINK_COUNT_RCV_ERRORS:
        case NVML_FI_DEV_NVLINK_COUNT_RCV_REMOTE_ERRORS:
        case NVML_FI_DEV_NVLINK_COUNT_RCV_GENERAL_ERRORS:
        case NVML_FI_DEV_NVLINK_COUNT_LOCAL_LINK_INTEGRITY_ERRORS:
        case NVML_FI_DEV_NVLINK_COUNT_XMIT_DISCARDS:
        case NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_FAILED_EVENTS:
        case NVML_FI_DEV_NVLINK_COUNT_EFFECTIVE_ERRORS:
        case NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS:
        case NVML_FI_DEV_NVLINK_COUNT_EFFECTIVE_BER:
        case NVML_FI_DEV_NVLINK_COUNT_SYMBOL_BER:
            /* NVLink5 only, per link (scopeId): symbol errors corrected by
             * FEC tick on every link, one per link per second; BER as
             * mantissa << 8 | exponent (effective 1e-15, symbol 3e-9) */
            if (!g->model->nvlink5) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            if (v->scopeId >= g->model->nvlinks) {
                v->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            switch (v->fieldId) {
            case NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS: v->value.ullVal = (unsigned long long)now_t(); break;
            case NVML_FI_DEV_NVLINK_COUNT_EFFECTIVE_BER: v->value.ullVal = (1u << 8) | 15u; break;
            case NVML_FI_DEV_NVLINK_COUNT_SYMBOL_BER: v->value.ullVal = (3u << 8) | 9u; break;
            default: v->value.ullVal = 0;
            }
            break;
        case NVML_FI_DEV_C2C_LINK_ERROR_INTR:
        case NVML_FI_DEV_C2C_LINK_ERROR_REPLAY:
        case NVML_FI_DEV_C2C_LINK_ERROR_REPLAY_B2B:
            if (!g->model->c2c) {
                v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->value.ullVal = v->fieldId == NVML_FI_DEV_C2C_LINK_ERROR_REPLAY ? 2 : 0;
            break;
        case NVML_FI_DEV_GET_GPU_RECOVERY_ACTION:
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = recovery_action_at(idx, now_t());
            break;
        case NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
        case NVML_FI_DEV_PCIE_COUNT_TX_BYTES:
        case NVML_FI_DEV_PCIE_COUNT_RX_BYTES:
        case NVML_FI_DEV_PERF_POLICY_POWER:
        case NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN:
        case NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN:
        case NVML_FI_DEV_ECC_SBE_VOL_TOTAL:
        case NVML_FI_DEV_ECC_DBE_VOL_TOTAL:
        case NVML_FI_DEV_ECC_SBE_AGG_TOTAL:
        case NVML_FI_DEV_ECC_DBE_AGG_TOTAL:
        case NVML_FI_DEV_ECC_SBE_VOL_DEV:
        case NVML_FI_DEV_ECC_DBE_VOL_DEV:
        case NVML_FI_DEV_ECC_SBE_AGG_DEV:
        case NVML_FI_DEV_ECC_DBE_AGG_DEV: {
            gpu_t *s = state(idx, now_t());
            unsigned long long x = 0;
            switch (v->fieldId) {
            case NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
                x = s->sig[S_ENERGY].set ? (unsigned long long)signal_at(&s->sig[S_ENERGY], s->last_t) : (unsigned long long)s->energy_mj;
                break;
            case NVML_FI_DEV_PCIE_COUNT_TX_BYTES: x = (unsigned long long)s->pcie_tx_b; break;
            case NVML_FI_DEV_PCIE_COUNT_RX_BYTES: x = (unsigned long long)s->pcie_rx_b; break;
            case NVML_FI_DEV_PERF_POLICY_POWER: x = (unsigned long long)s->power_violation_ns; break;
            /* nvml.h: GetViolationStatus(THERMAL) is field 269, not the
             * old policy field 75 (answered 0 below) */
            case NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN: x = (unsigned long long)s->thermal_violation_ns; break;
            case NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN: x = (unsigned long long)s->hw_thermal_violation_ns; break;
            /* every modelled ECC error is in device memory */
            case NVML_FI_DEV_ECC_SBE_VOL_TOTAL:
            case NVML_FI_DEV_ECC_SBE_VOL_DEV: x = s->ecc_corr; break;
            case NVML_FI_DEV_ECC_DBE_VOL_TOTAL:
            case NVML_FI_DEV_ECC_DBE_VOL_DEV: x = s->ecc_unc; break;
            case NVML_FI_DEV_ECC_SBE_AGG_TOTAL:
            case NVML_FI_DEV_ECC_SBE_AGG_DEV: x = s->ecc_corr_agg; break;
            case NVML_FI_DEV_ECC_DBE_AGG_TOTAL:
            case NVML_FI_DEV_ECC_DBE_AGG_DEV: x = s->ecc_unc_agg; break;
            }
            /* stamped when the integration stands, as a driver stamps its read */
            v->timestamp = (long long)(load_wall_us + (unsigned long long)(s->last_t * 1e6));
            int wrap32 = s->pcie_bits == 32 && (v->fieldId == NVML_FI_DEV_PCIE_COUNT_TX_BYTES || v->fieldId == NVML_FI_DEV_PCIE_COUNT_RX_BYTES);
            release(s);
            if (wrap32) {
                /* a 32-bit counter: wraps every 4 GiB */
                v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
                v->value.uiVal = (unsigned)(x & 0xFFFFFFFFULL);
                break;
            }
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->value.ullVal = x;
            break;
        }
        case NVML_FI_DEV_PERF_POLICY_THERMAL:
        case NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN: /* no external power brake modelled */
        case NVML_FI_DEV_PERF_POLICY_SYNC_BOOST:
        case NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT:
        case NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION:
        case NVML_FI_DEV_PERF_POLICY_RELIABILITY:
        case NVML_FI_DEV_PERF_POLICY_TOTAL_APP_CLOCKS:
        case NVML_FI_DEV_PERF_POLICY_TOTAL_BASE_CLOCKS:
        case NVML_FI_DEV_ECC_SBE_VOL_L1:
        case NVML_FI_DEV_ECC_DBE_VOL_L1:
        case NVML_FI_DEV_ECC_SBE_VOL_L2:
        case NVML_FI_DEV_ECC_DBE_VOL_L2:
        case NVML_FI_DEV_ECC_SBE_VOL_REG:
        case NVML_FI_DEV_ECC_DBE_VOL_REG:
        case NVML_FI_DEV_ECC_SBE_VOL_TEX:
        case NVML_FI_DEV_ECC_DBE_VOL_TEX:
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->value.ullVal = 0;
            break;
        default:
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return NVML_SUCCESS;
}

/* --------------------------------------------------------------- clocks */

EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock) {
    GUARD(device, clock);
    PHYSICAL_ONLY();
    int busy = util_at(g, now_t()) > 5;
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM: *clock = busy ? g->model->clk_sm : g->model->clk_idle; break;
    case NVML_CLOCK_MEM: *clock = g->model->clk_mem; break;
    case NVML_CLOCK_VIDEO: *clock = busy ? g->model->clk_video : g->model->clk_idle; break;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock) {
    GUARD(device, clock);
    PHYSICAL_ONLY();
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM: *clock = g->model->clk_sm; break;
    case NVML_CLOCK_MEM: *clock = g->model->clk_mem; break;
    case NVML_CLOCK_VIDEO: *clock = g->model->clk_video; break;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
    return NVML_SUCCESS;
}

/* pcie_link answers the four PCIe link queries: the model's maximum, or
 * the link as trained now (gpu.<i>.pcie_link, else the maximum). */
static nvmlReturn_t pcie_link(const char *fn, nvmlDevice_t device, unsigned int *out, int current, int width) {
    gpu_t *g;
    int mig;
    nvmlReturn_t r = guard(device, fn, &g, &mig); /* counted and faulted under the caller's name */
    if (r != NVML_SUCCESS) return r;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    PHYSICAL_ONLY();
    unsigned max = width ? g->model->pcie_width : g->model->pcie_gen;
    unsigned now = width ? g->pcie_width : g->pcie_gen;
    *out = current && now ? now : max;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *v) { return pcie_link(__func__, device, v, 0, 0); }
EXPORT nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t device, unsigned int *v) { return pcie_link(__func__, device, v, 0, 1); }
EXPORT nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t device, unsigned int *v) { return pcie_link(__func__, device, v, 1, 0); }
EXPORT nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t device, unsigned int *v) { return pcie_link(__func__, device, v, 1, 1); }

EXPORT nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, nvmlTemperatureThresholds_t type, unsigned int *temp) {
    GUARD(device, temp);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    switch (type) {
    case NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: *temp = g->model->t_shutdown; break;
    case NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: *temp = g->model->t_slowdown; break;
    case NVML_TEMPERATURE_THRESHOLD_GPU_MAX: *temp = g->model->t_gpu_max; break;
    default: return NVML_ERROR_NOT_SUPPORTED;
    }
    return NVML_SUCCESS;
}

/* The pre-R535 name of the same query. */
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *reasons);
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons) {
    return nvmlDeviceGetCurrentClocksEventReasons(device, reasons);
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *reasons) {
    GUARD(device, reasons);
    PHYSICAL_ONLY();
    double t = now_t();
    *reasons = 0;
    if (util_at(g, t) <= 5) *reasons |= nvmlClocksEventReasonGpuIdle;
    if (g->virt != NVML_GPU_VIRTUALIZATION_MODE_VGPU) {
        if (power_at(g, t) >= 0.95 * g->model->power_limit_w) *reasons |= nvmlClocksEventReasonSwPowerCap;
        if (temperature(g) >= 85) *reasons |= nvmlClocksEventReasonSwThermalSlowdown;
    }
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetViolationStatus(nvmlDevice_t device, nvmlPerfPolicyType_t policy, nvmlViolationTime_t *viol) {
    GUARD(device, viol);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    gpu_t *s = state((int)(g - gpus), now_t());
    viol->referenceTime = wall_us();
    switch (policy) {
    case NVML_PERF_POLICY_POWER: viol->violationTime = (unsigned long long)s->power_violation_ns; break;
    case NVML_PERF_POLICY_THERMAL: viol->violationTime = (unsigned long long)s->thermal_violation_ns; break;
    case NVML_PERF_POLICY_SYNC_BOOST:
    case NVML_PERF_POLICY_BOARD_LIMIT:
    case NVML_PERF_POLICY_LOW_UTILIZATION:
    case NVML_PERF_POLICY_RELIABILITY:
    case NVML_PERF_POLICY_TOTAL_APP_CLOCKS:
    case NVML_PERF_POLICY_TOTAL_BASE_CLOCKS: viol->violationTime = 0; break;
    default:
        release(s);
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    release(s);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, nvmlPstates_t *pState) {
    GUARD(device, pState);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    *pState = util_at(g, now_t()) > 5 ? NVML_PSTATE_0 : NVML_PSTATE_8;
    return NVML_SUCCESS;
}

/* Every modelled board is passively cooled unless gpu.<i>.fans gives it
 * fans (a PCIe board in a workstation chassis): fan k runs at the given
 * percent plus k. */
EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed) {
    GUARD(device, speed);
    PHYSICAL_ONLY();
    if (g->fans == 0) return NVML_ERROR_NOT_SUPPORTED;
    *speed = g->fan_pct;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t device, unsigned int *numFans) {
    GUARD(device, numFans);
    PHYSICAL_ONLY();
    if (g->fans == 0) return NVML_ERROR_NOT_SUPPORTED;
    *numFans = g->fans;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t device, unsigned int fan, unsigned int *speed) {
    GUARD(device, speed);
    PHYSICAL_ONLY();
    if (g->fans == 0) return NVML_ERROR_NOT_SUPPORTED;
    if (fan >= g->fans) return NVML_ERROR_INVALID_ARGUMENT;
    *speed = g->fan_pct + fan;
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------- PCIe, NVLink */

EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device, nvmlPcieUtilCounter_t counter, unsigned int *value) {
    GUARD(device, value);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    double u = util_at(g, now_t());
    switch (counter) {
    case NVML_PCIE_UTIL_TX_BYTES: *value = (unsigned)(u * 2000); break; /* KB/s */
    case NVML_PCIE_UTIL_RX_BYTES: *value = (unsigned)(u * 3000); break;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t device, unsigned int *value) {
    GUARD(device, value);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    *value = 0;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, nvmlEnableState_t *isActive) {
    GUARD(device, isActive);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    if (g->model->nvlinks == 0) return NVML_ERROR_NOT_SUPPORTED;
    if (link >= g->model->nvlinks) return NVML_ERROR_INVALID_ARGUMENT;
    *isActive = NVML_FEATURE_ENABLED;
    double t = now_t();
    for (int i = 0; i < nfaults; i++) {
        fault_t *f = &faults[i];
        if (f->kind == F_NVLINK_DOWN && (f->gpu == g - gpus || f->gpu == -1) && f->link == link && t >= f->start && t < f->start + f->duration)
            *isActive = NVML_FEATURE_DISABLED;
    }
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetNvLinkErrorCounter(nvmlDevice_t device, unsigned int link, nvmlNvLinkErrorCounter_t counter,
                                                    unsigned long long *counterValue) {
    GUARD(device, counterValue);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    (void)counter;
    if (link >= g->model->nvlinks) return NVML_ERROR_INVALID_ARGUMENT;
    *counterValue = 0;
    return NVML_SUCCESS;
}

/* ------------------------------------------------------- ECC and memory */

EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t errorType, nvmlEccCounterType_t counterType,
                                                unsigned long long *eccCounts) {
    GUARD(device, eccCounts);
    PHYSICAL_ONLY();
    gpu_t *s = state((int)(g - gpus), now_t());
    int agg = counterType == NVML_AGGREGATE_ECC;
    unsigned long long v = errorType == NVML_MEMORY_ERROR_TYPE_CORRECTED ? (agg ? s->ecc_corr_agg : s->ecc_corr)
                                                                          : (agg ? s->ecc_unc_agg : s->ecc_unc);
    release(s);
    if (errorType != NVML_MEMORY_ERROR_TYPE_CORRECTED && errorType != NVML_MEMORY_ERROR_TYPE_UNCORRECTED) return NVML_ERROR_INVALID_ARGUMENT;
    if (counterType != NVML_VOLATILE_ECC && counterType != NVML_AGGREGATE_ECC) return NVML_ERROR_INVALID_ARGUMENT;
    *eccCounts = v;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int *corrRows, unsigned int *uncRows, unsigned int *isPending,
                                              unsigned int *failureOccurred) {
    GUARD(device, corrRows && uncRows && isPending && failureOccurred);
    PHYSICAL_ONLY();
    NOT_ON_VGPU();
    if (!g->model->remap) return NVML_ERROR_NOT_SUPPORTED;
    gpu_t *s = state((int)(g - gpus), now_t());
    *corrRows = (unsigned)(s->ecc_corr / 100);
    *uncRows = (unsigned)s->ecc_unc;
    *isPending = s->ecc_unc > 0;
    *failureOccurred = 0;
    release(s);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t device, nvmlPageRetirementCause_t cause, unsigned int *pageCount,
                                              unsigned long long *addresses) {
    GUARD(device, pageCount);
    PHYSICAL_ONLY();
    if (g->model->remap) return NVML_ERROR_NOT_SUPPORTED; /* Ampere+ remaps rows instead */
    /* A double-bit error retires its page; single-bit errors retire one
     * page per 100 on the same page (as the driver does after repeats). */
    gpu_t *s = state((int)(g - gpus), now_t());
    unsigned n;
    switch (cause) {
    case NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR: n = (unsigned)s->ecc_unc_agg; break;
    case NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS: n = (unsigned)(s->ecc_corr_agg / 100); break;
    default: release(s); return NVML_ERROR_INVALID_ARGUMENT;
    }
    release(s);
    if (!addresses || *pageCount < n) {
        unsigned have = *pageCount;
        *pageCount = n;
        return addresses && have < n ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    }
    for (unsigned i = 0; i < n; i++) addresses[i] = 0x1000ULL * (i + 1) + (cause == NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR);
    *pageCount = n;
    return NVML_SUCCESS;
}

/* ---------------------------------------------------------- vGPU licence */

/* A vGPU guest's licence (gpu.<i>.vgpu_license, licensed by default); other
 * GPUs have no licensable features. Exported under the versions go-nvml
 * binds; the structure is nvml.h's. */
static nvmlReturn_t grid_features(const char *fn, nvmlDevice_t device, nvmlGridLicensableFeatures_t *f) {
    gpu_t *g;
    int mig;
    nvmlReturn_t r = guard(device, fn, &g, &mig);
    if (r != NVML_SUCCESS) return r;
    if (!f) return NVML_ERROR_INVALID_ARGUMENT;
    memset(f, 0, sizeof(*f));
    if (g->virt != NVML_GPU_VIRTUALIZATION_MODE_VGPU) return NVML_SUCCESS;
    f->isGridLicenseSupported = 1;
    f->licensableFeaturesCount = 1;
    f->gridLicensableFeatures[0].featureCode = NVML_GRID_LICENSE_FEATURE_CODE_COMPUTE;
    f->gridLicensableFeatures[0].featureState = !g->unlicensed;
    f->gridLicensableFeatures[0].featureEnabled = 1;
    snprintf(f->gridLicensableFeatures[0].productName, sizeof(f->gridLicensableFeatures[0].productName), "NVIDIA Virtual Compute Server");
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetGridLicensableFeatures_v3(nvmlDevice_t device, nvmlGridLicensableFeatures_t *f) {
    return grid_features(__func__, device, f);
}

EXPORT nvmlReturn_t nvmlDeviceGetGridLicensableFeatures_v4(nvmlDevice_t device, nvmlGridLicensableFeatures_t *f) {
    return grid_features(__func__, device, f);
}

/* ------------------------------------------------------------------ MIG */

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode) {
    GUARD(device, currentMode && pendingMode);
    PHYSICAL_ONLY();
    if (!g->model->mig) return NVML_ERROR_NOT_SUPPORTED;
    *currentMode = *pendingMode = g->nmig > 0 ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    GUARD(device, count);
    PHYSICAL_ONLY();
    if (!g->model->mig) return NVML_ERROR_NOT_SUPPORTED;
    *count = MAX_MIG;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *migDevice) {
    GUARD(device, migDevice);
    PHYSICAL_ONLY();
    if (g->nmig == 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= MAX_MIG) return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= (unsigned)g->nmig) return NVML_ERROR_NOT_FOUND;
    migDevice->handle = &g->mig[index].h;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) {
    GUARD(device, id);
    if (mig < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *id = g->mig[mig].gi;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id) {
    GUARD(device, id);
    if (mig < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *id = g->mig[mig].ci;
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------ processes */

static nvmlReturn_t running(gpu_t *g, unsigned int *infoCount, nvmlProcessInfo_t *infos) {
    if ((unsigned)g->nprocs > *infoCount) {
        *infoCount = (unsigned)g->nprocs;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (int i = 0; i < g->nprocs; i++) {
        infos[i].pid = g->procs[i].pid;
        infos[i].usedGpuMemory = (unsigned long long)g->procs[i].mem_mib << 20;
        infos[i].gpuInstanceId = g->procs[i].gi;
        infos[i].computeInstanceId = g->procs[i].ci;
    }
    *infoCount = (unsigned)g->nprocs;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_t *infos) {
    GUARD(device, infoCount);
    PHYSICAL_ONLY();
    return running(g, infoCount, infos);
}

EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_t *infos) {
    GUARD(device, infoCount);
    (void)infos;
    *infoCount = 0;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_t *infos) {
    GUARD(device, infoCount);
    (void)infos;
    *infoCount = 0;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *utilization,
                                                    unsigned int *processSamplesCount, unsigned long long lastSeenTimeStamp) {
    GUARD(device, processSamplesCount);
    PHYSICAL_ONLY();
    NOT_ON_MIG_PARENT();
    unsigned long long now = wall_us();
    if (g->nprocs == 0 || now <= lastSeenTimeStamp) return NVML_ERROR_NOT_FOUND;
    if (!utilization || *processSamplesCount < (unsigned)g->nprocs) {
        *processSamplesCount = (unsigned)g->nprocs;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned u = (unsigned)lround(util_at(g, now_t()) / g->nprocs);
    for (int i = 0; i < g->nprocs; i++) {
        utilization[i] = (nvmlProcessUtilizationSample_t){
            .pid = g->procs[i].pid, .timeStamp = now, .smUtil = u, .memUtil = u / 2, .encUtil = 0, .decUtil = 0};
    }
    *processSamplesCount = (unsigned)g->nprocs;
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------ GPM */

EXPORT nvmlReturn_t nvmlGpmQueryDeviceSupport(nvmlDevice_t device, nvmlGpmSupport_t *gpmSupport) {
    GUARD(device, gpmSupport);
    if (gpmSupport->version != NVML_GPM_SUPPORT_VERSION) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    gpmSupport->isSupportedDevice = g->model->gpm && g->virt != NVML_GPU_VIRTUALIZATION_MODE_VGPU;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlGpmSampleAlloc(nvmlGpmSample_t *gpmSample) {
    if (!gpmSample) return NVML_ERROR_INVALID_ARGUMENT;
    struct nvmlGpmSample_st *s = calloc(1, sizeof(*s));
    if (!s) return NVML_ERROR_MEMORY;
    gpmSample->handle = s;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlGpmSampleFree(nvmlGpmSample_t gpmSample) {
    free(gpmSample.handle);
    return NVML_SUCCESS;
}

static nvmlReturn_t gpm_sample(nvmlDevice_t device, int gi, nvmlGpmSample_t sample, const char *fn) {
    gpu_t *g;
    int mig;
    nvmlReturn_t r = guard(device, fn, &g, &mig);
    if (r != NVML_SUCCESS) return r;
    if (!sample.handle || mig >= 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->model->gpm || g->virt == NVML_GPU_VIRTUALIZATION_MODE_VGPU) return NVML_ERROR_NOT_SUPPORTED;
    if (gi >= 0) {
        int found = 0;
        for (int m = 0; m < g->nmig; m++) found |= (int)g->mig[m].gi == gi;
        if (!found) return NVML_ERROR_NOT_FOUND;
    }
    *sample.handle = (struct nvmlGpmSample_st){.gpu = (int)(g - gpus), .mig_gi = gi, .t = now_t(), .filled = 1};
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlGpmSampleGet(nvmlDevice_t device, nvmlGpmSample_t gpmSample) {
    return gpm_sample(device, -1, gpmSample, "nvmlGpmSampleGet");
}

EXPORT nvmlReturn_t nvmlGpmMigSampleGet(nvmlDevice_t device, unsigned int gpuInstanceId, nvmlGpmSample_t gpmSample) {
    return gpm_sample(device, (int)gpuInstanceId, gpmSample, "nvmlGpmMigSampleGet");
}

EXPORT nvmlReturn_t nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *mg) {
    if (!mg) return NVML_ERROR_INVALID_ARGUMENT;
    if (mg->version != NVML_GPM_METRICS_GET_VERSION) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    struct nvmlGpmSample_st *a = mg->sample1.handle, *b = mg->sample2.handle;
    if (!a || !b || !a->filled || !b->filled || a->gpu != b->gpu || a->mig_gi != b->mig_gi || mg->numMetrics > NVML_GPM_METRIC_MAX)
        return NVML_ERROR_INVALID_ARGUMENT;
    gpu_t *g = &gpus[b->gpu];
    double u = util_at(g, b->t), bw = membw_at(g, b->t);
    for (unsigned i = 0; i < mg->numMetrics; i++) {
        nvmlGpmMetric_t *m = &mg->metrics[i];
        m->nvmlReturn = NVML_SUCCESS;
        m->metricInfo = (nvmlGpmMetricMetricInfo_t){0};
        switch (m->metricId) {
        case NVML_GPM_METRIC_SM_UTIL: m->value = 0.9 * u; break;
        case NVML_GPM_METRIC_SM_OCCUPANCY: m->value = 0.6 * u; break;
        case NVML_GPM_METRIC_DRAM_BW_UTIL: m->value = bw; break;
        case NVML_GPM_METRIC_ANY_TENSOR_UTIL: m->value = 0.7 * u; break;
        case NVML_GPM_METRIC_FP64_UTIL: m->value = 0.1 * u; break;
        case NVML_GPM_METRIC_FP32_UTIL: m->value = 0.5 * u; break;
        case NVML_GPM_METRIC_FP16_UTIL: m->value = 0.6 * u; break;
        case NVML_GPM_METRIC_INTEGER_UTIL: m->value = 0.2 * u; break;
        case NVML_GPM_METRIC_GRAPHICS_UTIL: m->value = u; break;
        case NVML_GPM_METRIC_HMMA_TENSOR_UTIL: m->value = 0.6 * u; break;
        case NVML_GPM_METRIC_DFMA_TENSOR_UTIL: m->value = 0.05 * u; break;
        case NVML_GPM_METRIC_DMMA_TENSOR_UTIL: m->value = 0.03 * u; break;
        case NVML_GPM_METRIC_IMMA_TENSOR_UTIL: m->value = 0.02 * u; break;
        default:
            /* the video engines: 7 NVDEC and 7 NVJPG on Hopper (the decoder
             * signal on the first two NVDECs), 1 NVOFA */
            if (m->metricId >= NVML_GPM_METRIC_NVDEC_0_UTIL && m->metricId <= NVML_GPM_METRIC_NVDEC_7_UTIL) {
                unsigned k = m->metricId - NVML_GPM_METRIC_NVDEC_0_UTIL;
                if (k >= 7) m->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                else m->value = k < 2 ? dec_at(g, b->t) : 0;
            } else if (m->metricId >= NVML_GPM_METRIC_NVJPG_0_UTIL && m->metricId <= NVML_GPM_METRIC_NVJPG_7_UTIL) {
                if (m->metricId - NVML_GPM_METRIC_NVJPG_0_UTIL >= 7) m->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                else m->value = 0;
            } else if (m->metricId == NVML_GPM_METRIC_NVOFA_0_UTIL) {
                m->value = 0;
            } else {
                m->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
            }
        }
    }
    return NVML_SUCCESS;
}

/* --------------------------------------------------------------- events */

EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    struct nvmlEventSet_st *s = calloc(1, sizeof(*s));
    if (!s) return NVML_ERROR_MEMORY;
    /* a set made in a later session (after nvmlShutdown) does not see the
     * events of before it; one made at start sees those of the first second */
    s->created = sessions > 1 ? now_t() : 0;
    set->handle = s;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    free(set.handle);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long *eventTypes) {
    GUARD(device, eventTypes);
    *eventTypes = nvmlEventTypeXidCriticalError | nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set) {
    GUARD(device, set.handle);
    PHYSICAL_ONLY();
    if (eventTypes & ~(unsigned long long)(nvmlEventTypeXidCriticalError | nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError))
        return NVML_ERROR_NOT_SUPPORTED;
    set.handle->registered[g - gpus] |= eventTypes;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    driver_hang_wait(); /* past its timeout: the driver is stuck */
    struct nvmlEventSet_st *s = set.handle;
    if (!s || !data) return NVML_ERROR_INVALID_ARGUMENT;
    double deadline = now_t() + timeoutms / 1000.0;
    for (;;) {
        double t = now_t();
        pthread_mutex_lock(&global_lock);
        for (int i = 0; i < nfaults; i++) {
            fault_t *f = &faults[i];
            if ((f->kind != F_XID && f->kind != F_XID_STORM) || t < f->start || f->start < s->created || s->delivered[i] >= f->count) continue;
            for (int gi = 0; gi < ngpus; gi++) {
                if ((f->gpu != gi && f->gpu != -1) || !(s->registered[gi] & nvmlEventTypeXidCriticalError)) continue;
                s->delivered[i]++; /* a '*' XID reaches the first registered GPU */
                memset(data, 0, sizeof(*data));
                data->device.handle = &gpus[gi].h;
                data->eventType = nvmlEventTypeXidCriticalError;
                data->eventData = f->code;
                data->gpuInstanceId = 0xFFFFFFFF;
                data->computeInstanceId = 0xFFFFFFFF;
                pthread_mutex_unlock(&global_lock);
                return NVML_SUCCESS;
            }
        }
        /* Sleep until the next XID is due or the deadline, whichever is
         * first: a real driver blocks in the kernel, and a poll loop here
         * would be the simulator's CPU counted as the agent's. */
        double wake = deadline;
        for (int i = 0; i < nfaults; i++)
            if ((faults[i].kind == F_XID || faults[i].kind == F_XID_STORM) && s->delivered[i] < faults[i].count && faults[i].start > t && faults[i].start < wake)
                wake = faults[i].start;
        pthread_mutex_unlock(&global_lock);
        if (t >= deadline) return NVML_ERROR_TIMEOUT;
        sleep_seconds(wake - t + 0.0005);
    }
}

EXPORT nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
    return nvmlEventSetWait_v2(set, data, timeoutms);
}
