# pushcap: build, test, bench, install, demo.
PREFIX ?= /opt/fmadio
DESTDIR ?=
CC ?= cc
CFLAGS ?= -O2 -g
CFLAGS += -Wall -Wextra -std=gnu11 -D_GNU_SOURCE -fno-strict-aliasing
PKGS := luajit
LUAJIT_CFLAGS := $(shell pkg-config --cflags $(PKGS))
LUAJIT_LIBS := $(shell pkg-config --libs $(PKGS))

B := build
CORE := pcap_read pcap_write split proc
OBJS := $(CORE:%=$(B)/%.o) $(B)/cdef.o $(B)/host.o
HDR := runtime/pushcap.h

all: $(B)/fmadiolua $(B)/pcapgen

$(B):
	mkdir -p $(B)

$(B)/%.o: runtime/%.c $(HDR) | $(B)
	$(CC) $(CFLAGS) $(LUAJIT_CFLAGS) -Iruntime -c -o $@ $<

# pc_cdef() returns pushcap.h minus preprocessor lines: the header is the
# one description of the C surface, for the compiler and for ffi.cdef.
$(B)/cdef.c: $(HDR) | $(B)
	{ echo '/* generated from runtime/pushcap.h */'; \
	  echo 'const char *pc_cdef(void) { return'; \
	  grep -v '^#' $(HDR) | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/'; \
	  echo '; }'; } > $@

$(B)/cdef.o: $(B)/cdef.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/fmadiolua: $(OBJS)
	$(CC) $(CFLAGS) -rdynamic -o $@ $(OBJS) $(LUAJIT_LIBS) -lm

$(B)/pcapgen: runtime/pcapgen.c | $(B)
	$(CC) $(CFLAGS) -o $@ $< -lm

.PHONY: all test bench demo install clean
