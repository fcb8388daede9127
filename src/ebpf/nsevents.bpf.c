// SPDX-License-Identifier: GPL-2.0
/* nsexporter's eBPF source: every successful namespace change of any task, and (the task
 * probes) every new process, exec, process exit and in-place change of a process's facts, as
 * they happen.
 *
 * Tracepoints only (no kprobes: kernels without them still have these):
 *   sys_enter_setns, sys_enter_unshare  keep the caller's namespaces, keyed by tid;
 *   sys_exit_setns, sys_exit_unshare    on success, compare and report the types that changed;
 *   sys_exit_clone, sys_exit_clone3     in the child (ret 0), compare with the parent's and
 *                                       report a child born in namespaces of its own
 *                                       (CLONE_NEW*, or CLONE_PARENT from elsewhere).
 * The task probes, which the loader attaches apart (an older kernel may lack one):
 *   tp_btf/sched_process_fork           a new process (not a thread), from the child's task;
 *   tp_btf/sched_process_exec           an exec;
 *   tp_btf/sched_process_exit           the last thread of a process (group_dead);
 *   tp_btf/cgroup_attach_task           "touched": a process moved to another cgroup;
 *   sys_exit_setuid, _setreuid, _setresuid  "touched": the owner of /proc/PID may change;
 *   sys_enter_prctl, sys_exit_prctl     "touched": PR_SET_NAME, PR_SET_DUMPABLE.
 * And one iterator, which the scan reads at its interval rather than parsing every mount
 * namespace's mountinfo:
 *   iter/task                           each mount namespace's inode and mount-table generation.
 * Each report carries the namespace inodes, read from the task (CO-RE, task.h), so that a
 * stay of a few milliseconds is judged even after /proc shows the task back home.
 *
 * Bounded: one ring buffer; a report that finds it full is dropped and counted in LOST, which
 * the exporter publishes. Every report the probes try is numbered per CPU first (SEQ), so
 * that the reader sees each loss, wherever it happened, as a gap. The enter maps are LRUs: a
 * task that never returns (killed in the syscall) cannot fill them.
 */
#include "task.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* Namespace types, in the order of the exporter's NsType (model.rs). */
enum { NS_CGROUP, NS_IPC, NS_MNT, NS_NET, NS_PID, NS_TIME, NS_USER, NS_UTS, NS_TYPES };

/* What the task did: the `syscall` of a change. */
enum { CHANGE_SETNS = 1, CHANGE_UNSHARE = 2, CHANGE_CLONE = 3, CHANGE_CLONE3 = 4 };

/* A task's namespaces, by the kernel's objects: comparing pointers tells a change without
 * reading an inode, so a fork, which shares its parent's nsproxy, costs a few reads. A
 * namespace cannot be freed and another made at its address within one syscall: unshare(2)
 * makes the new one before it lets the old go. */
struct namespaces {
	void *ns[NS_TYPES];
};

/* What a report is: the header's `kind`. */
enum { REPORT_CHANGE = 1, REPORT_FORK = 2, REPORT_EXEC = 3, REPORT_EXIT = 4, REPORT_TOUCHED = 5 };

/* Every report opens with this (16 bytes): its kind, the CPU whose probe wrote it and that
 * CPU's number for it. */
struct header {
	__u32 kind;
	__u32 cpu;
	__u64 seq;
};

/* A namespace change; ebpf/mod.rs parses it (native-endian, 88 bytes after the header). */
struct change {
	__u32 tgid;
	__u32 tid;
	__u64 start_boottime; /* the process's (group leader's), in ns since boot */
	__u32 syscall;
	__u32 changed;       /* bit i: type i changed */
	__u32 inum[NS_TYPES]; /* the task's inodes after the change; 0 where unknown */
	char comm[16];
	/* The parent process, whose cgroup a process gone before /proc is read was born in. */
	__u32 parent_tgid;
	__u32 pad;
	__u64 parent_start_boottime;
};

/* What a task probe saw of a process (64 bytes after the header). */
struct task {
	__u32 tgid;
	__u32 parent_tgid;
	__u64 start_boottime; /* the group leader's, in ns since boot */
	__u64 parent_start_boottime;
	__u64 cgroup_id; /* on the unified hierarchy; 0 where none */
	__u32 inum[NS_TYPES];
};

struct change_report {
	struct header h;
	struct change c;
};

struct task_report {
	struct header h;
	struct task t;
};

/* The loader sets the ring's size (scan.ebpf-ring-buffer) and this, a quarter of it. */
const volatile __u64 wake_at = (1 << 20) / 4;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} CHANGES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct namespaces);
} BEFORE SEC(".maps");

/* The last number each CPU gave a report it tried. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} SEQ SEC(".maps");

/* The prctl options that change what the exporter reads, between a thread's enter and exit. */
#define PR_SET_DUMPABLE 4
#define PR_SET_NAME 15
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} PRCTL SEC(".maps");

/* Reports dropped because the ring buffer was full, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} LOST SEC(".maps");

/* The syscall tracepoints' records (events/syscalls/<name>/format): a stable layout. */
struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__s32 pad;
	__s64 ret;
};

struct sys_enter_ctx {
	__u64 common;
	__s32 nr;
	__s32 pad;
	__u64 args[6];
};

/* /proc/PID/ns/pid: the task's own (active) pid namespace, not pid_for_children. */
static __always_inline void *pid_ns(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	if (!pid)
		return 0;
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid upid = {};
	bpf_core_read(&upid, sizeof(upid), &pid->numbers[level & 0x3f]);
	return upid.ns;
}

static __always_inline void read_namespaces(struct task_struct *task, struct namespaces *out)
{
	struct nsproxy *ns = BPF_CORE_READ(task, nsproxy);
	/* An exiting task has none; its namespaces read as NULL (unknown). */
	if (ns) {
		out->ns[NS_CGROUP] = BPF_CORE_READ(ns, cgroup_ns);
		out->ns[NS_IPC] = BPF_CORE_READ(ns, ipc_ns);
		out->ns[NS_MNT] = BPF_CORE_READ(ns, mnt_ns);
		out->ns[NS_NET] = BPF_CORE_READ(ns, net_ns);
		out->ns[NS_TIME] = BPF_CORE_READ(ns, time_ns);
		out->ns[NS_UTS] = BPF_CORE_READ(ns, uts_ns);
	}
	out->ns[NS_PID] = pid_ns(task);
	out->ns[NS_USER] = BPF_CORE_READ(task, real_cred, user_ns);
}

/* The inode of namespace `ns` of type `type`: each type keeps its ns_common elsewhere. */
static __always_inline __u32 inum(int type, void *ns)
{
	switch (type) {
	case NS_CGROUP: return BPF_CORE_READ((struct cgroup_namespace *)ns, ns.inum);
	case NS_IPC: return BPF_CORE_READ((struct ipc_namespace *)ns, ns.inum);
	case NS_MNT: return BPF_CORE_READ((struct mnt_namespace *)ns, ns.inum);
	case NS_NET: return BPF_CORE_READ((struct net *)ns, ns.inum);
	case NS_PID: return BPF_CORE_READ((struct pid_namespace *)ns, ns.inum);
	case NS_TIME: return BPF_CORE_READ((struct time_namespace *)ns, ns.inum);
	case NS_USER: return BPF_CORE_READ((struct user_namespace *)ns, ns.inum);
	case NS_UTS: return BPF_CORE_READ((struct uts_namespace *)ns, ns.inum);
	}
	return 0;
}

/* Reserves the report and numbers it, or numbers it and counts it lost. Numbered after the
 * reservation, so that two reports of one CPU leave the ring in their numbers' order unless
 * the first is still being written, which holds the reader back until both are there. The
 * number is per CPU and not atomic (an atomic fetch needs BPF v3, kernel 5.12): a probe
 * preempted between the read and the write, possible only on a fully preemptible kernel, may
 * share its number with another, which hides a loss from the reader but never invents one. */
static __always_inline struct header *reserve(__u32 kind, __u64 size)
{
	__u32 zero = 0;
	struct header *h = bpf_ringbuf_reserve(&CHANGES, size, 0);
	__u64 seq = 0;
	__u64 *last = bpf_map_lookup_elem(&SEQ, &zero);
	if (last) {
		seq = *last + 1;
		*last = seq;
	}
	if (!h) {
		__u64 *lost = bpf_map_lookup_elem(&LOST, &zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return 0;
	}
	h->kind = kind;
	h->cpu = bpf_get_smp_processor_id();
	h->seq = seq;
	return h;
}

/* No wakeup per report: in a VM the wakeup's self-IPI cost more than all the rest
 * (docs/performance.md). The reader polls every 10 ms, and is woken early only once a
 * quarter of the ring is waiting. */
static __always_inline void submit(void *report)
{
	long wake = bpf_ringbuf_query(&CHANGES, BPF_RB_AVAIL_DATA) >= wake_at ? BPF_RB_FORCE_WAKEUP
									       : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(report, wake);
}

static __always_inline void report(struct task_struct *task, __u32 syscall,
				   const struct namespaces *before, const struct namespaces *after)
{
	__u32 changed = 0;
#pragma unroll
	for (int i = 0; i < NS_TYPES; i++)
		if (after->ns[i] && before->ns[i] != after->ns[i])
			changed |= 1u << i;
	if (!changed)
		return;
	struct change_report *r = (struct change_report *)reserve(REPORT_CHANGE, sizeof(*r));
	if (!r)
		return;
	struct change *c = &r->c;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	c->tgid = pid_tgid >> 32;
	c->tid = (__u32)pid_tgid;
	c->start_boottime = BPF_CORE_READ(task, group_leader, start_boottime);
	struct task_struct *parent = BPF_CORE_READ(task, group_leader, real_parent);
	c->parent_tgid = BPF_CORE_READ(parent, tgid);
	c->pad = 0;
	c->parent_start_boottime = BPF_CORE_READ(parent, group_leader, start_boottime);
	c->syscall = syscall;
	c->changed = changed;
#pragma unroll
	for (int i = 0; i < NS_TYPES; i++)
		c->inum[i] = after->ns[i] ? inum(i, after->ns[i]) : 0;
	bpf_get_current_comm(c->comm, sizeof(c->comm));
	submit(r);
}

static __always_inline int enter(void)
{
	struct namespaces before = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	read_namespaces((struct task_struct *)bpf_get_current_task(), &before);
	bpf_map_update_elem(&BEFORE, &tid, &before, BPF_ANY);
	return 0;
}

static __always_inline int exit(struct sys_exit_ctx *ctx, __u32 syscall)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct namespaces *before = bpf_map_lookup_elem(&BEFORE, &tid);
	if (!before)
		return 0;
	struct namespaces was = *before;
	bpf_map_delete_elem(&BEFORE, &tid);
	if (ctx->ret != 0)
		return 0;
	struct namespaces now = {};
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	read_namespaces(task, &now);
	report(task, syscall, &was, &now);
	return 0;
}

static __always_inline int born(struct sys_exit_ctx *ctx, __u32 syscall)
{
	/* The parent's return (the child's tid) and failures: nothing new. */
	if (ctx->ret != 0)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *parent_task = BPF_CORE_READ(task, real_parent);
	/* Most children share their parent's nsproxy, user and pid namespaces: nothing new, and
	 * no more to read. The pid namespace apart: a child of a parent that entered another for
	 * its children (setns or unshare with CLONE_NEWPID) shares its nsproxy and not that. */
	if (BPF_CORE_READ(task, nsproxy) == BPF_CORE_READ(parent_task, nsproxy) &&
	    BPF_CORE_READ(task, real_cred, user_ns) == BPF_CORE_READ(parent_task, real_cred, user_ns) &&
	    pid_ns(task) == pid_ns(parent_task))
		return 0;
	struct namespaces parent = {}, now = {};
	read_namespaces(parent_task, &parent);
	read_namespaces(task, &now);
	report(task, syscall, &parent, &now);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_setns")
int enter_setns(void *ctx) { return enter(); }

SEC("tracepoint/syscalls/sys_exit_setns")
int exit_setns(struct sys_exit_ctx *ctx) { return exit(ctx, CHANGE_SETNS); }

SEC("tracepoint/syscalls/sys_enter_unshare")
int enter_unshare(void *ctx) { return enter(); }

SEC("tracepoint/syscalls/sys_exit_unshare")
int exit_unshare(struct sys_exit_ctx *ctx) { return exit(ctx, CHANGE_UNSHARE); }

SEC("tracepoint/syscalls/sys_exit_clone")
int exit_clone(struct sys_exit_ctx *ctx) { return born(ctx, CHANGE_CLONE); }

SEC("tracepoint/syscalls/sys_exit_clone3")
int exit_clone3(struct sys_exit_ctx *ctx) { return born(ctx, CHANGE_CLONE3); }

/* The task probes. */

/* Reports what `kind` of thing process `task` did: its ids, its parent's, its cgroup and its
 * namespaces now. */
static __always_inline void report_task(__u32 kind, struct task_struct *task)
{
	struct task_report *r = (struct task_report *)reserve(kind, sizeof(*r));
	if (!r)
		return;
	struct task *t = &r->t;
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	struct task_struct *parent = BPF_CORE_READ(leader, real_parent);
	t->tgid = BPF_CORE_READ(task, tgid);
	t->start_boottime = BPF_CORE_READ(leader, start_boottime);
	t->parent_tgid = parent ? BPF_CORE_READ(parent, tgid) : 0;
	t->parent_start_boottime = parent ? BPF_CORE_READ(parent, group_leader, start_boottime) : 0;
	t->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	struct namespaces ns = {};
	read_namespaces(task, &ns);
#pragma unroll
	for (int i = 0; i < NS_TYPES; i++)
		t->inum[i] = ns.ns[i] ? inum(i, ns.ns[i]) : 0;
	submit(r);
}

/* A BTF tracepoint's arguments are the tracepoint's own (include/trace/events/sched.h). */
SEC("tp_btf/sched_process_fork")
int task_fork(__u64 *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx[1];
	/* A thread shares its process's facts: nothing new to read. */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	report_task(REPORT_FORK, child);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int task_exec(__u64 *ctx)
{
	report_task(REPORT_EXEC, (struct task_struct *)ctx[0]);
	return 0;
}

/* group_dead, the second argument since 6.16: an older kernel's verifier refuses the read,
 * and the task probes stay off there. */
SEC("tp_btf/sched_process_exit")
int task_exit(__u64 *ctx)
{
	if (!(__u8)ctx[1])
		return 0;
	report_task(REPORT_EXIT, (struct task_struct *)ctx[0]);
	return 0;
}

/* (dst_cgrp, path, task, threadgroup), after the move: the task's cgroup is the new one. */
SEC("tp_btf/cgroup_attach_task")
int task_cgroup(__u64 *ctx)
{
	report_task(REPORT_TOUCHED, (struct task_struct *)ctx[2]);
	return 0;
}

static __always_inline int touched_on_success(struct sys_exit_ctx *ctx)
{
	if (ctx->ret == 0)
		report_task(REPORT_TOUCHED, (struct task_struct *)bpf_get_current_task());
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int exit_setuid(struct sys_exit_ctx *ctx) { return touched_on_success(ctx); }

SEC("tracepoint/syscalls/sys_exit_setreuid")
int exit_setreuid(struct sys_exit_ctx *ctx) { return touched_on_success(ctx); }

SEC("tracepoint/syscalls/sys_exit_setresuid")
int exit_setresuid(struct sys_exit_ctx *ctx) { return touched_on_success(ctx); }

/* Only the two options the exporter reads the effect of are kept till the exit. */
SEC("tracepoint/syscalls/sys_enter_prctl")
int enter_prctl(struct sys_enter_ctx *ctx)
{
	__u32 option = ctx->args[0];
	if (option != PR_SET_NAME && option != PR_SET_DUMPABLE)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&PRCTL, &tid, &option, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_prctl")
int exit_prctl(struct sys_exit_ctx *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (!bpf_map_lookup_elem(&PRCTL, &tid))
		return 0;
	bpf_map_delete_elem(&PRCTL, &tid);
	return touched_on_success(ctx);
}

/* The iterator: what it writes per task (16 bytes; ebpf/mounts.rs parses it). */
struct mount_generation {
	__u32 inum;
	__u32 pad;
	__u64 event;
};

/* Each process's mount namespace and its generation, and each thread's that is not its
 * process's (a thread made without CLONE_FS may have unshared one): the scan re-reads the
 * mountinfo of a namespace only where the generation moved. Nothing is kept between reads. */
SEC("iter/task")
int mount_generations(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;
	struct nsproxy *ns = BPF_CORE_READ(task, nsproxy);
	if (!ns)
		return 0;
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid) &&
	    ns == BPF_CORE_READ(task, group_leader, nsproxy))
		return 0;
	struct mnt_namespace *mnt = BPF_CORE_READ(ns, mnt_ns);
	if (!mnt)
		return 0;
	struct mount_generation g = {
		.inum = BPF_CORE_READ(mnt, ns.inum),
		.pad = 0,
		.event = BPF_CORE_READ(mnt, event),
	};
	bpf_seq_write(ctx->meta->seq, &g, sizeof(g));
	return 0;
}
