"""The networks: the CNN backbone (torchvision registry), InsAtten (eq. 1-3) and MangoNet's
co-attention and graph convolution (eq. 4-11). Pure torch modules; import only the top level.
"""
