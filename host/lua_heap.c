/* lua_heap.c: the memory of a source process's LuaJIT state (lua_heap.h).
 *
 * Why not LuaJIT's own allocator: it is dlmalloc's, which merges a freed
 * block with its free neighbours and files the result in a bin by size
 * (a tree for the larger ones). A stream app's Lua frees as fast as it
 * allocates, blocks of a few sizes: a source's run loop makes and drops a
 * key string, a value table and its JSON text per message. In a loop of
 * just that, lj_alloc_free alone took 24% of the time (perf, with LuaJIT
 * built with symbols), more than the allocations. Here a freed small block
 * goes on the free list of its size class and is the next one given out at
 * that size: a push and a pop, and the block reused is the one freed last,
 * still in the cache. That loop took 200 ns a message against 270, and the
 * benchmark's custom source (bench/) 8-10% less CPU. malloc itself was no
 * better than LuaJIT's in the source (its arenas serve librdkafka's threads
 * too): 20% more CPU.
 *
 * Only a source's process takes it (vm.h's QH_VM_OWN_HEAP): its heap is
 * small (under 1 MB) and collected at pause 150 (gc_pause.lua), so the
 * blocks freed come back while still in the cache. An app lets its heap
 * grow by megabytes between cycles (gc_pause.lua again), and there the
 * benchmark pipeline took 7-10% more CPU on this heap than on LuaJIT's, as
 * much at pause 400 and the same at 150-200: the blocks a cycle freed come
 * back cold, one by one, where dlmalloc merges them into large free chunks
 * and carves the next messages' objects from them in order.
 *
 * Small blocks (up to QH_LUA_HEAP_SMALL_MAX bytes) are carved from slabs of
 * SLAB_SIZE bytes taken from malloc, in classes GRAIN bytes apart. A freed
 * one waits on its class's list until the heap is destroyed: a state's
 * small blocks take the memory they took at their peak, class by class.
 * Larger blocks are malloc's and go back to it when freed. There is no
 * header per block: LuaJIT passes a block's size when it frees or resizes
 * it (lua_Alloc's osize), and the size names the class.
 *
 * A SAN build checks that it does: each block begins with a header holding
 * the size it was given at, and a free or resize at another size aborts.
 * Free blocks, the part of a block past its size and the slab not yet
 * carved are poisoned for AddressSanitizer, so a read of a freed block, or
 * past the end of one, is reported as with malloc's blocks.
 * Uses: libc, LuaJIT's Lua API; AddressSanitizer's interface when built
 * with it. */
#include "lua_heap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define CHECKED 1
#else
#define CHECKED 0
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

#define GRAIN 16                                  /* the class step; blocks are 16-byte aligned, as malloc's */
#define CLASSES (QH_LUA_HEAP_SMALL_MAX / GRAIN)   /* class c holds blocks of c * GRAIN bytes, c = 1..CLASSES */
#define SLAB_SIZE (64 * 1024)
#define HEADER (CHECKED ? GRAIN : 0)              /* a checked block's size record, before what LuaJIT sees */

typedef struct free_block {
    struct free_block *next;
} free_block;

/* The first GRAIN bytes of a slab: the heap's list of them, for destroy. */
typedef struct slab {
    struct slab *next;
} slab;

struct qh_lua_heap {
    free_block *free[CLASSES + 1];   /* [c]: the free blocks of class c, the last freed first */
    char *carve, *carve_end;         /* the newest slab's part never given out */
    slab *slabs;
    size_t in_use;                   /* bytes given out, at the sizes asked */
};

/* The class of a block of size bytes (its header included); 0: a large one. */
static size_t class_of(size_t size)
{
    return size <= QH_LUA_HEAP_SMALL_MAX ? (size + GRAIN - 1) / GRAIN : 0;
}

static int add_slab(qh_lua_heap *h)
{
    slab *s = malloc(SLAB_SIZE);
    if (!s) return 0;
    s->next = h->slabs;
    h->slabs = s;
    /* the rest of the slab before (smaller than the block asked) is left */
    h->carve = (char *)s + GRAIN;
    h->carve_end = (char *)s + SLAB_SIZE;
    ASAN_POISON_MEMORY_REGION(h->carve, (size_t)(h->carve_end - h->carve));
    return 1;
}

/* A block of class c: the last one freed, else carved. NULL when out of
 * memory. */
static void *take_small(qh_lua_heap *h, size_t c)
{
    size_t size = c * GRAIN;
    free_block *b = h->free[c];
    if (b) {
        ASAN_UNPOISON_MEMORY_REGION(b, size);
        h->free[c] = b->next;
        return b;
    }
    if ((size_t)(h->carve_end - h->carve) < size && !add_slab(h)) return NULL;
    void *p = h->carve;
    h->carve += size;
    ASAN_UNPOISON_MEMORY_REGION(p, size);
    return p;
}

static void give_back_small(qh_lua_heap *h, void *block, size_t c)
{
    free_block *b = block;
    b->next = h->free[c];
    h->free[c] = b;
    ASAN_POISON_MEMORY_REGION(b, c * GRAIN);
}

/* A block of size bytes (header included), small or large. */
static void *take_block(qh_lua_heap *h, size_t size)
{
    size_t c = class_of(size);
    return c ? take_small(h, c) : malloc(size);
}

static void give_back_block(qh_lua_heap *h, void *block, size_t size)
{
    size_t c = class_of(size);
    if (c) give_back_small(h, block, c);
    else free(block);
}

/* What LuaJIT gets of a block given at size bytes: the block, or in a
 * checked heap what follows its size record (the rest of a small block's
 * class poisoned). */
static void *user_part(void *block, size_t size)
{
#if CHECKED
    *(size_t *)block = size;
    size_t c = class_of(HEADER + size);
    if (c) ASAN_POISON_MEMORY_REGION((char *)block + HEADER + size, c * GRAIN - HEADER - size);
    return (char *)block + HEADER;
#else
    (void)size;
    return block;
#endif
}

/* The block of ptr, which LuaJIT says it got at osize bytes; a checked
 * heap aborts when that is not the size it was given at: taking it as
 * another class would give the same memory out twice. */
static void *block_of(void *ptr, size_t osize)
{
#if CHECKED
    char *block = (char *)ptr - HEADER;
    size_t given = *(size_t *)block;
    if (given != osize) {
        fprintf(stderr, "qhost: lua_heap: a block of %zu bytes freed or resized as one of %zu bytes\n",
                given, osize);
        abort();
    }
    size_t c = class_of(HEADER + osize);
    if (c) ASAN_UNPOISON_MEMORY_REGION(block, c * GRAIN);
    return block;
#else
    (void)osize;
    return ptr;
#endif
}

void *qh_lua_heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    qh_lua_heap *h = ud;
    if (!ptr) {
        if (nsize == 0) return NULL;
        void *block = take_block(h, HEADER + nsize);
        if (!block) return NULL;
        h->in_use += nsize;
        return user_part(block, nsize);
    }
    size_t oc = class_of(HEADER + osize), nc = class_of(HEADER + nsize);
    /* the same class: the block already has the room (a checked heap moves
     * it anyway, so that the size it records stays exact) */
    if (!CHECKED && nsize > 0 && oc && oc == nc) {
        h->in_use = h->in_use - osize + nsize;
        return ptr;
    }
    void *block = block_of(ptr, osize);
    if (nsize == 0) {
        give_back_block(h, block, HEADER + osize);
        h->in_use -= osize;
        return NULL;
    }
    void *moved;
    if (!oc && !nc) {
        moved = realloc(block, HEADER + nsize);   /* large to large */
        if (!moved) goto keep;
    } else {
        moved = take_block(h, HEADER + nsize);
        if (!moved) goto keep;
        memcpy((char *)moved + HEADER, ptr, osize < nsize ? osize : nsize);
        give_back_block(h, block, HEADER + osize);
    }
    h->in_use = h->in_use - osize + nsize;
    return user_part(moved, nsize);
keep:
    /* out of memory: ptr stays as it was, poisoning included */
    user_part(block, osize);
    return NULL;
}

qh_lua_heap *qh_lua_heap_new(void)
{
    return calloc(1, sizeof(qh_lua_heap));
}

size_t qh_lua_heap_in_use(const qh_lua_heap *h)
{
    return h->in_use;
}

void qh_lua_heap_destroy(qh_lua_heap *h)
{
    if (!h) return;
    slab *s = h->slabs;
    while (s) {
        slab *next = s->next;
        ASAN_UNPOISON_MEMORY_REGION(s, SLAB_SIZE);
        free(s);
        s = next;
    }
    free(h);
}

/* As luaL_newstate's: the message of an error raised outside any pcall,
 * before LuaJIT exits. */
static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n", msg ? msg : "?");
    fflush(stderr);
    return 0;
}

lua_State *qh_lua_heap_newstate(void)
{
    qh_lua_heap *h = qh_lua_heap_new();
    if (!h) return NULL;
    lua_State *L = lua_newstate(qh_lua_heap_alloc, h);
    if (!L) {
        /* Out of memory, or a LuaJIT that takes no allocator but its own
         * (x64 without GC64, which says so on stderr): then its own. */
        qh_lua_heap_destroy(h);
        return luaL_newstate();
    }
    lua_atpanic(L, panic);
    return L;
}

void qh_lua_heap_close(lua_State *L)
{
    void *ud = NULL;
    lua_Alloc allocf = lua_getallocf(L, &ud);
    lua_close(L);
    if (allocf == qh_lua_heap_alloc) qh_lua_heap_destroy(ud);
}
