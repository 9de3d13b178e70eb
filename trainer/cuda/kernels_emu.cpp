/*
 * trainer/cuda/kernels_emu.cpp - kernels.cu compiled as host C++ on the CPU
 * emulation of CUDA (emu/emu.h, reached through launch.h when the compiler
 * is not nvcc), with TR_CUDA_EMU defined so its launchers are tr_cuda_emu_*.
 */
#include "kernels.cu"
