/*
 * A stand-in for Windows' bcryptprimitives.dll, for running the Windows binary under wine 8.0 only.
 *
 * Rust's std (1.78 and later) draws randomness from ProcessPrng in bcryptprimitives.dll, which Windows 10
 * and later ship and wine 8.0 (Debian 12) lacks: the program dies at load with "Library
 * bcryptprimitives.dll ... not found". This DLL exports ProcessPrng and fills the buffer from advapi32's
 * RtlGenRandom (SystemFunction036), which wine implements. It is placed next to the .exe in the test's wine
 * prefix, never shipped: real Windows has the real DLL.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
