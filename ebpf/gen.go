package ebpf

//go:generate go tool bpf2go -cc clang -strip llvm-strip -cflags "-O2 -g -Wall -Werror -ffile-prefix-map=${PWD}=." -type espy_exit_reason bpf xdp/espy.c
