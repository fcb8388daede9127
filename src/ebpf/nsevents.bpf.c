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

/* A task's namespaces, by the kernel's objects: comparing pointers tells a change without
 * reading an inode, so a fork, which shares its parent's nsproxy, costs a few reads. A
 * namespace cannot be freed and another made at its address within one syscall: unshare(2)
 * makes the new one before it lets the old go. */
struct namespaces {
	void *ns[NS_TYPES];
};

/* One report; ebpf/mod.rs parses it (native-endian, 88 bytes). */
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

#define RING (1 << 20)
#define WAKE_AT (RING / 4)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING);
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
	struct change *c = bpf_ringbuf_reserve(&CHANGES, sizeof(*c), 0);
	if (!c) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&LOST, &zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return;
	}
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
	/* No wakeup per report: in a VM the wakeup's self-IPI cost more than all the rest
	 * (docs/performance.md). The reader polls every 10 ms, and is woken early only once a
	 * quarter of the ring is waiting. */
	long wake = bpf_ringbuf_query(&CHANGES, BPF_RB_AVAIL_DATA) >= WAKE_AT ? BPF_RB_FORCE_WAKEUP
									: BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(c, wake);
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
