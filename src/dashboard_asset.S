/*
 * dashboard_asset.S - embeds src/dashboard.html in the binary at build time
 * (no generated file in the tree). The assembler finds the file through the
 * include path given in Makefile.am (-Wa,-I$(top_srcdir)/src).
 *
 *   const char weir_dashboard_html[];                  the bytes, NUL-terminated
 *   const unsigned long long weir_dashboard_html_size; their count, without the NUL
 */
    .section .rodata
    .globl weir_dashboard_html
    .balign 16
weir_dashboard_html:
    .incbin "dashboard.html"
weir_dashboard_html_end:
    .byte 0

    .globl weir_dashboard_html_size
    .balign 8
weir_dashboard_html_size:
    .quad weir_dashboard_html_end - weir_dashboard_html

#if defined(__ELF__)
    .section .note.GNU-stack,"",%progbits
#endif
