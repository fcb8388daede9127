/* The kernel types nsevents.bpf.c reads, cut down to the fields it reads.
 *
 * CO-RE: `preserve_access_index` makes clang record each field access as a BTF relocation,
 * which the loader (aya) resolves against the running kernel's own BTF
 * (/sys/kernel/btf/vmlinux) at load time. The offsets here are therefore never used, and no
 * kernel headers (nor a vmlinux.h dumped from the build machine's kernel) are needed: only the
 * names of the structs and fields must match the kernel's. All of these have existed since
 * 5.6 (time namespaces), with `ns_common.inum` the inode in /proc/PID/ns/TYPE.
 */
#ifndef NSEXPORTER_TASK_H
#define NSEXPORTER_TASK_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

/* The uapi constants used (include/uapi/linux/bpf.h: a stable ABI). */
enum {
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
#define BPF_ANY 0
#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0

#define CORE __attribute__((preserve_access_index))

struct ns_common {
	unsigned int inum;
} CORE;

struct uts_namespace { struct ns_common ns; } CORE;
struct ipc_namespace { struct ns_common ns; } CORE;
/* `event`: the kernel's mount-table generation of the namespace, set from one global counter
 * at every mount attached or detached in it (by a mount system call, by propagation from a
 * peer, by an automount, by a mount point removed in another namespace), which is what a poll
 * of /proc/PID/mountinfo wakes on. */
struct mnt_namespace {
	struct ns_common ns;
	__u64 event;
} CORE;
struct pid_namespace { struct ns_common ns; } CORE;
struct net { struct ns_common ns; } CORE;
struct time_namespace { struct ns_common ns; } CORE;
struct cgroup_namespace { struct ns_common ns; } CORE;
struct user_namespace { struct ns_common ns; } CORE;

struct nsproxy {
	struct uts_namespace *uts_ns;
	struct ipc_namespace *ipc_ns;
	struct mnt_namespace *mnt_ns;
	struct pid_namespace *pid_ns_for_children;
	struct net *net_ns;
	struct time_namespace *time_ns;
	struct cgroup_namespace *cgroup_ns;
} CORE;

struct cred {
	struct user_namespace *user_ns;
} CORE;

struct upid {
	int nr;
	struct pid_namespace *ns;
} CORE;

struct pid {
	unsigned int level;
	struct upid numbers[1];
} CORE;

/* The unified hierarchy's cgroup of a task: task->cgroups->dfl_cgrp->kn->id, the inode of its
 * directory in cgroup2 (a u64 since 5.5). */
struct kernfs_node {
	__u64 id;
} CORE;

struct cgroup {
	struct kernfs_node *kn;
} CORE;

struct css_set {
	struct cgroup *dfl_cgrp;
} CORE;

struct task_struct {
	int pid;
	int tgid;
	__u64 start_boottime;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	const struct cred *real_cred;
	struct nsproxy *nsproxy;
	struct css_set *cgroups;
} CORE;

/* The task iterator's context (kernel/bpf/task_iter.c): read as the context, whose layout the
 * verifier checks against the kernel's own, not relocated. */
struct seq_file;
struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
};

#endif
