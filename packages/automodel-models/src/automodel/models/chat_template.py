"""CHATML_TEMPLATE (text, with tool calls) and CHATML_VLM_TEMPLATE (text and images): ChatML Jinja chat templates.

``CHATML_TEMPLATE`` is the one ``build_tokenizer`` gives its tokenizers. Each turn is
``<|im_start|>ROLE\\nCONTENT<|im_end|>\\n`` for the roles system, user, assistant and tool;
content that is not a string (a tool's result as a dict) is written as JSON. An assistant turn's
``tool_calls`` (OpenAI style ``{"function": {"name", "arguments"}}`` or flat ``{"name",
"arguments"}``) follow its content, one per call, as
``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``. Tools passed as
``apply_chat_template(..., tools=[...])`` open the conversation as a system turn listing one JSON
schema per line. ``add_generation_prompt=True`` ends with ``<|im_start|>assistant\\n``. Assistant
turns (content, tool calls and their ``<|im_end|>``) sit in a ``{% generation %}`` block, so
``return_assistant_tokens_mask=True`` marks the tokens a model should learn to produce.

``CHATML_VLM_TEMPLATE`` is the one ``build_tiny_vlm`` gives its processor and tokenizer. A turn's
content is a string, a dict (written as JSON) or a list of OpenAI-style parts:
``{"type": "text", "text": ...}`` is written as its text, ``{"type": "image"}`` (with or without
an ``"image"`` value) and ``{"type": "image_url", ...}`` as ``IMAGE_TOKEN``, which the processor
expands to the image's tokens; any other part type is an error. Each turn is
``<|im_start|>ROLE\\nCONTENT<|im_end|>\\n``; assistant turns (content and ``<|im_end|>``) sit in a
``{% generation %}`` block and ``add_generation_prompt=True`` ends with
``<|im_start|>assistant\\n``, as in ``CHATML_TEMPLATE``. It has no tool calls.
"""

# The text CHATML_VLM_TEMPLATE writes for each image part.
IMAGE_TOKEN = "<image>"

CHATML_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n# Tools\n' }}
    {%- for tool in tools %}
        {{- ('' if loop.first else '\n') + tool | tojson }}
    {%- endfor %}
    {{- '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {{- '<|im_start|>' + message.role + '\n' }}
    {%- if message.role == 'assistant' %}
        {%- generation %}
            {%- if message.content %}
                {{- message.content }}
            {%- endif %}
            {%- for call in message.tool_calls or [] %}
                {%- set function = call.function or call %}
                {%- if message.content or not loop.first %}
                    {{- '\n' }}
                {%- endif %}
                {{- '<tool_call>\n{"name": ' + function.name | tojson + ', "arguments": ' }}
                {%- if function.arguments is string %}
                    {{- function.arguments }}
                {%- else %}
                    {{- function.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
            {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\n' }}
    {%- else %}
        {%- if message.content is string %}
            {{- message.content }}
        {%- elif message.content %}
            {{- message.content | tojson }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}"""


CHATML_VLM_TEMPLATE = r"""{%- macro render_content(content) %}
    {%- if content is string %}
        {{- content }}
    {%- elif content is mapping %}
        {{- content | tojson }}
    {%- elif content %}
        {%- for part in content %}
            {%- if part.type in ['image', 'image_url'] %}
                {{- '<image>' }}
            {%- elif part.type == 'text' %}
                {{- part.text }}
            {%- else %}
                {{- raise_exception('content part type ' + part.type | string + ' is not text, image or image_url') }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
{%- endmacro %}
{%- for message in messages %}
    {{- '<|im_start|>' + message.role + '\n' }}
    {%- if message.role == 'assistant' %}
        {%- generation %}
            {{- render_content(message.content) + '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\n' }}
    {%- else %}
        {{- render_content(message.content) + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}"""
