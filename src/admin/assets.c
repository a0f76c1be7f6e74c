/*
 * assets — the dashboard files embedded with the assembler's .incbin (paths
 * relative to the repository root, where the build runs; the Makefile makes
 * this object depend on the .html, .css and .js files of src/admin). Each
 * file gets a start and an end symbol in .rodata; the table below gives
 * them names and content types. The icon is a string here.
 */
#include "admin/assets.h"

#include <string.h>

#define EMBED(sym, file)                                    \
    __asm__(".section .rodata\n"                            \
            ".global " #sym "\n"                            \
            ".type " #sym ", @object\n"                     \
            #sym ":\n"                                      \
            ".incbin \"" file "\"\n"                        \
            ".global " #sym "_end\n"                        \
            #sym "_end:\n"                                  \
            ".byte 0\n"                                     \
            ".previous\n");                                 \
    extern const char sym[], sym##_end[]

EMBED(admin_dashboard_html, "src/admin/dashboard.html");
EMBED(admin_dashboard_css, "src/admin/dashboard.css");
EMBED(admin_dashboard_js, "src/admin/dashboard.js");

/* The page's icon: a limpet shell, small enough to live here. */
static const char favicon_svg[] =
    "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">"
    "<path d=\"M3 26 Q16 -4 29 26 Z\" fill=\"#2457c5\"/>"
    "<path d=\"M9 26 L16 8 L23 26\" fill=\"none\" stroke=\"#fff\" stroke-width=\"2\"/>"
    "</svg>";

bool admin_asset_find(const char *name, struct admin_asset *out)
{
    static const struct {
        const char *name, *content_type, *start, *end;
    } assets[] = {
        {"", "text/html; charset=utf-8", admin_dashboard_html, admin_dashboard_html_end},
        {"index.html", "text/html; charset=utf-8", admin_dashboard_html, admin_dashboard_html_end},
        {"dashboard.css", "text/css; charset=utf-8", admin_dashboard_css, admin_dashboard_css_end},
        {"dashboard.js", "text/javascript; charset=utf-8", admin_dashboard_js,
         admin_dashboard_js_end},
        {"favicon.svg", "image/svg+xml", favicon_svg, favicon_svg + sizeof(favicon_svg) - 1},
    };
    for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++) {
        if (strcmp(assets[i].name, name) == 0) {
            *out = (struct admin_asset){assets[i].name, assets[i].content_type,
                                        assets[i].start, (size_t)(assets[i].end - assets[i].start)};
            return true;
        }
    }
    return false;
}
