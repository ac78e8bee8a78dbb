#!/usr/bin/env python3
# perfbuckets.py: shares of a `perf script` output of callgate by part of the
# program (fast path, full SIP path, UDP read loop, NATS, scheduler, GC,
# sysmon), and the callers of map/hash/copy leaves. A sample goes to the first
# bucket its stack matches. Usage:
#   perf record -e cpu-clock -F 999 -g -p PID -o perf.data -- sleep 8
#   perf script -i perf.data > perf.script && python3 bench/sip/perfbuckets.py perf.script
import collections,re,sys
samples=[];cur=None
for line in open(sys.argv[1]):
    if line.startswith('\t') or line.startswith(' '):
        m=re.match(r'\s+[0-9a-f]+ (.+?)\+0x[0-9a-f]+ \(',line) or re.match(r'\s+[0-9a-f]+ (.+?) \(',line)
        if m and cur is not None: cur.append(m.group(1))
    elif line.strip():
        if cur: samples.append(cur)
        cur=[]
if cur: samples.append(cur)
N=len(samples); print("samples",N)
skip=lambda f: f.startswith('runtime.') or f.startswith('internal/runtime') or f in('memeqbody','aeshashbody','indexbytebody','memmove')
def parent(st, leafs):
    if st[0] not in leafs: return None
    for f in st[1:]:
        if not skip(f): return f
    return st[-1]
leafs={'runtime.mapaccess2_faststr','memeqbody','aeshashbody','runtime.mapassign_faststr','internal/runtime/maps.(*Map).getWithoutKeySmallFastStr','runtime.memmove','__vdso_clock_gettime'}
c=collections.Counter(p for s in samples if (p:=parent(s,leafs)))
print("-- parents of map/memeq/memmove/clock leaves")
for k,v in c.most_common(20): print(f"{100*v/N:5.2f}% {k}")
def bucket(s):
    j=' '.join(s)
    if 'nats-server' in j: return 'nats-server'
    if 'nats-io/nats.go' in j or 'nats%2ego' in j: return 'nats.go client'
    if 'runtime.sysmon' in j: return 'sysmon'
    if 'gcBgMarkWorker' in j or 'gcDrain' in j: return 'gc'
    if 'callhistory' in j: return 'callhistory'
    if 'fastPath' in j: return 'fastPath'
    if 'handleMessage' in j: return 'sip full path'
    if 'readUDPOn' in j: return 'udp read other'
    if 'runtime.schedule' in j or 'findRunnable' in j or 'park_m' in j: return 'scheduler'
    return 'other:'+(s[-1] if s else 'empty')
c=collections.Counter(bucket(s) for s in samples)
print("-- buckets")
for k,v in c.most_common(25): print(f"{100*v/N:5.2f}% {k}")
