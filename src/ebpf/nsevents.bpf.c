// SPDX-License-Identifier: GPL-2.0
/* nsexporter's eBPF source: every successful namespace change of any task, as it happens.
 *
 * Syscall tracepoints only (no kprobes: kernels without them still have these):
 *   sys_enter_setns, sys_enter_unshare  keep the caller's namespaces, keyed by tid;
 *   sys_exit_setns, sys_exit_unshare    on success, compare and report the types that changed;
 *   sys_exit_clone, sys_exit_clone3     in the child (ret 0), compare with the parent's and
 *                                       report a child born in namespaces of its own
 *                                       (CLONE_NEW*, or CLONE_PARENT from elsewhere).
 * Each report carries the new namespace inodes, read from the task (CO-RE, task.h), so that a
 * stay of a few milliseconds is judged even after /proc shows the task back home.
 *
 * Bounded: one ring buffer; a report that finds it full is dropped and counted in LOST, which
 * the exporter publishes. The enter map is an LRU: a task that never returns (killed in the
 * syscall) cannot fill it.
 */
#include "task.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* Namespace types, in the order of the exporter's NsType (model.rs). */
enum { NS_CGROUP, NS_IPC, NS_MNT, NS_NET, NS_PID, NS_TIME, NS_USER, NS_UTS, NS_TYPES };

/* What the task did: the `syscall` of a change. */
enum { CHANGE_SETNS = 1, CHANGE_UNSHARE = 2, CHANGE_CLONE = 3, CHANGE_CLONE3 = 4 };

struct namespaces {
	__u32 inum[NS_TYPES];
};

/* One report; ebpf/mod.rs parses it (native-endian, 72 bytes). */
struct change {
	__u32 tgid;
	__u32 tid;
	__u64 start_boottime; /* the process's (group leader's), in ns since boot */
	__u32 syscall;
	__u32 changed; /* bit i: type i changed */
	struct namespaces ns;
	char comm[16];
};

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

static __always_inline void read_namespaces(struct task_struct *task, struct namespaces *out)
{
	struct nsproxy *ns = BPF_CORE_READ(task, nsproxy);
	/* An exiting task has none; its namespaces read as 0 (unknown). */
	if (ns) {
		out->inum[NS_CGROUP] = BPF_CORE_READ(ns, cgroup_ns, ns.inum);
		out->inum[NS_IPC] = BPF_CORE_READ(ns, ipc_ns, ns.inum);
		out->inum[NS_MNT] = BPF_CORE_READ(ns, mnt_ns, ns.inum);
		out->inum[NS_NET] = BPF_CORE_READ(ns, net_ns, ns.inum);
		out->inum[NS_TIME] = BPF_CORE_READ(ns, time_ns, ns.inum);
		out->inum[NS_UTS] = BPF_CORE_READ(ns, uts_ns, ns.inum);
	}
	/* /proc/PID/ns/pid is the task's own (active) pid namespace, not pid_for_children. */
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	if (pid) {
		unsigned int level = BPF_CORE_READ(pid, level);
		struct upid upid = {};
		bpf_core_read(&upid, sizeof(upid), &pid->numbers[level & 0x3f]);
		if (upid.ns)
			out->inum[NS_PID] = BPF_CORE_READ(upid.ns, ns.inum);
	}
	out->inum[NS_USER] = BPF_CORE_READ(task, real_cred, user_ns, ns.inum);
}

static __always_inline void report(struct task_struct *task, __u32 syscall,
				   const struct namespaces *before, const struct namespaces *after)
{
	__u32 changed = 0;
#pragma unroll
	for (int i = 0; i < NS_TYPES; i++)
		if (after->inum[i] && before->inum[i] != after->inum[i])
			changed |= 1u << i;
	if (!changed)
		return;
	struct change *c = bpf_ringbuf_reserve(&CHANGES, sizeof(*c), 0);
	if (!c) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&LOST, &zero);
		if (lost)
			*lost += 1;
		return;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	c->tgid = pid_tgid >> 32;
	c->tid = (__u32)pid_tgid;
	c->start_boottime = BPF_CORE_READ(task, group_leader, start_boottime);
	c->syscall = syscall;
	c->changed = changed;
	c->ns = *after;
	bpf_get_current_comm(c->comm, sizeof(c->comm));
	bpf_ringbuf_submit(c, 0);
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
	struct namespaces parent = {}, now = {};
	read_namespaces(BPF_CORE_READ(task, real_parent), &parent);
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
