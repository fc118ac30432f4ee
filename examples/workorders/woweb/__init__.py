"""A thin work-order web app on vitalcore's public API (aiohttp + jinja2).

:func:`woweb.web.make_app` builds the application from a clinical store and a service
desk; :func:`woweb.demo.seed` fills a store with a demo hospital for trying it out.
"""
